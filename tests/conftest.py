"""Project test configuration: the Hypothesis profile (see spikenm.conformance.profiles)
and the `torch_one_thread` fixture."""

from collections.abc import Iterator

import pytest

from spikenm.conformance.profiles import load_selected_profile

load_selected_profile()


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """Tiny tensors: one torch thread avoids spin-waiting on a shared two-core machine
    (restored after the module)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
