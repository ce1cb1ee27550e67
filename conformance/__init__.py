"""spikenm conformance suite: the judge of SPEC.md for any backend.

Every backend of spikenm (the NumPy/Numba reference, torch, JAX, the generic array-API
backend, or your own) must pass it.  Each row of its table is one check of one SPEC
clause (``S1.2``), or of the same clause through `spikenm.api` (``S1.2:api``); a check
runs the backend on Hypothesis-drawn inputs and verifies, in order, that the call runs,
that results are the backend's own array type, their dtype, their shape, their values
against the reference (`spikenm.reference`, with the tolerances of SPEC S0.6; exact
for masks, indices and packed values), gradients against the reference's hand-written
VJPs, and the clause's invariants (exactly ``n`` per block, ties to the lower index,
soft masks summing to ``n``, packing and padding rules, round trips, Gumbel statistics).

Validating a backend in three steps
-----------------------------------
1. **Implement the protocol** `spikenm.protocol.Backend`: an object (a module works)
   with ``name`` (str), optionally ``differentiable`` (bool, default True) and the
   functions ``dtype_name``, ``moveaxis``, ``all_finite``, ``to_numpy``,
   ``from_numpy``, ``gumbel_like``, ``topn_mask``, ``relaxed_topn``, ``sample_mask``,
   ``block_probs``, ``eligibility_credit`` (with ``signed``, S2.9), ``credit_scores``,
   ``eid_targets``, ``eid_loss``, ``block_nnz``, ``pack``, ``unpack``, ``spmm`` and,
   unless ``differentiable`` is False, ``sample_mask_vjp``, ``relaxed_topn_vjp``,
   ``eid_loss_vjp``; a differentiable backend should also give the optional
   ``stop_gradient`` (so that the S2.11 ``gated`` targets carry no gradient).  Every
   block function works on the last axis of already-validated arrays and returns arrays of
   the type of its inputs (never NumPy for another framework's input);
   ``from_numpy(a)`` must build your arrays from NumPy ones (the suite uses it for
   every input) and ``to_numpy`` must copy them back.  ``all_finite`` returns a Python
   bool for concrete arrays.  float32 and float64 are required; the packed-format
   functions must also keep every other real dtype your framework holds.

2. **Point the suite at it**::

       python -m spikenm.conformance --backend mypackage.mymodule:BACKEND --report out.json

   or, under pytest, one test per check::

       pytest --pyargs spikenm.conformance --spikenm-backend mypackage.mymodule:BACKEND
       SPIKENM_BACKEND=mypackage.mymodule:BACKEND pytest --pyargs spikenm.conformance

   The ``--spikenm-*`` options come from the plugin `spikenm.conformance.pytest_plugin`,
   registered through the package's ``pytest11`` entry point (if your installation
   lacks it, add ``-p spikenm.conformance.pytest_plugin``).

   Built-in names: ``numpy`` (alias ``reference``), ``torch``, ``jax`` (the suite turns
   on ``jax_enable_x64``: float64 is part of the contract), ``array_api_strict``, and
   any name added with `spikenm.registry.register` (the one backend registry; a
   registered backend with a type test ``owns(x)`` also gets `spikenm.api` dispatch).  A
   missing or unknown name is an error, never a silent default; a backend missing
   protocol members is refused with the list of members and the checks needing them.
   Options: ``--profile ci|dev|thorough`` (Hypothesis profiles of
   `spikenm.conformance.profiles`; ``ci`` is derandomized), ``--max-examples N``,
   ``--derandomize`` or ``--seed S``, ``--clauses S1.2,S3.4`` (clause or check ids),
   ``--xfails FILE``, ``--no-shrink``, ``--list``.

3. **Read the table and the report.**  One row per check: check id, clause, title,
   examples run, status (``pass``, ``FAIL``, ``ERROR``, ``n/a``, ``xfail``, ``XPASS``)
   and the first failure message.  Every failure ends with a copy-pasteable snippet
   that rebuilds the exact inputs with NumPy, converts them with your ``from_numpy``
   and repeats the failing call, with the expected and obtained values.  The JSON
   report (``--report``) adds the backend and framework versions, Python, platform,
   profile, seed and timings.  The exit status is non-zero on any failure.

Model backends
--------------
A model backend (`spikenm.snn.ModelBackend`: one forward/backward step and one eval pass
of a spiking `spikenm.snn.Graph`, SPEC S4) is validated the same way::

    python -m spikenm.conformance --model-backend mypackage.mymodule:factory --device cpu
    pytest --pyargs spikenm.conformance --spikenm-model-backend torch

(``factory(device)`` returns the backend; built-in names ``numpy``, ``torch``, ``jax``.)
Each row draws small graphs of one kind (linear, conv with stride 1/2, batch norm,
pooling, residual adds, the shipped networks), runs one call on the backend and on the
NumPy reference model backend in float64 and compares loss, correct count, every
gradient, the new running statistics, EID credits (S2.3/S5.5) and firing rates within
S4.11, on examples where no membrane potential lies within ``1e-6`` of the threshold
(`spikenm.conformance.model_trial`); eval mode, direct-encoded against time-major input,
float32, the device rule and mismatched keys have rows of their own.  Expected failures
of a model backend go in ``xfail/model-<backend>.txt``.

Expected failures
-----------------
``xfail/<backend>.txt`` in this package (or ``--xfails FILE``) lists clause or check
ids, one per line (``#`` starts a reason).  A listed check that fails is ``xfail``; a
listed check that passes is ``XPASS`` and fails the run, so stale entries cannot hide
a later regression.  The files of the built-in backends are empty.

What is not compared
--------------------
Floating results are compared on blocks where the comparison is meaningful in the
tested dtype (`spikenm.conformance.conditioning`); other blocks are checked for their
invariants only, and the table says how many.  Gradient checks are n/a for
``differentiable = False``; API-level checks are n/a for backends that `spikenm.api`
does not dispatch to.

This package imports nothing heavy on import: the checks, the reference and the
frameworks are loaded when a run starts.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_backend", "run_suite", "run_model_suite", "RunConfig"]


def __getattr__(name: str) -> Any:
    if name == "load_backend":
        from .selection import load_backend

        return load_backend
    if name in ("run_suite", "run_model_suite", "RunConfig"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'spikenm.conformance' has no attribute {name!r}")
