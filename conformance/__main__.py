"""``python -m spikenm.conformance --backend NAME``: see `spikenm.conformance.command`."""

from spikenm.conformance.command import main

raise SystemExit(main())
