"""``spikenm demo``: sample a mask for a real-sized layer, pack it and round-trip the 2:4 export."""

from __future__ import annotations

import time

import numpy as np

from . import api


def run_demo(out_features: int = 512, in_features: int = 1024, seed: int = 0) -> dict[str, float]:
    """Run the demo on NumPy arrays and return its measurements.

    Steps: random logits and weights for a Linear ``(out, in)`` layer; a 2:4 mask sampled
    from Gumbel noise; ``pack`` of ``W * mask``; CUTLASS export in float16 and back;
    ``spmm`` against the dense product.
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(out_features, in_features)).astype(np.float32)
    weight = rng.normal(size=(out_features, in_features)).astype(np.float32)
    t0 = time.perf_counter()
    mask = api.sample_mask(logits, 2, 4, noise=api.gumbel_like(logits, seed), temperature=0.5)
    t_sample = time.perf_counter() - t0
    api.check_nm(weight * mask, 2, 4, name="W * mask")
    packed = api.pack(weight, 2, 4, mask=mask)
    dense = api.unpack(packed)
    values16, meta = api.to_cutlass(packed, dtype="float16")
    back = api.unpack(api.from_cutlass(values16, meta))
    x = rng.normal(size=(in_features, 8)).astype(np.float32)
    y_sparse = api.spmm(packed, x)
    y_dense = (weight * mask) @ x
    return {
        "shape": (out_features, in_features),
        "kept_fraction": float(mask.mean()),
        "sample_ms": 1e3 * t_sample,
        "pack_exact": bool(np.array_equal(dense, weight * mask)),
        "cutlass_values": tuple(values16.shape),
        "cutlass_meta": tuple(meta.shape),
        "cutlass_meta_dtype": str(meta.dtype),
        "cutlass_roundtrip_exact": bool(np.array_equal(back, (weight * mask).astype(np.float16))),
        "spmm_max_abs_err": float(np.max(np.abs(y_sparse - y_dense))),
        "packed_bytes": int(packed.values.nbytes + packed.indices.nbytes),
        "dense_bytes": int(weight.nbytes),
    }


def print_demo(result: dict[str, float]) -> None:
    """Print the demo summary."""
    out, inp = result["shape"]
    print(f"spikenm demo: Linear({inp} -> {out}) weight, pattern 2:4")
    print(f"  sampled mask: kept fraction {result['kept_fraction']:.3f} (expected 0.500), "
          f"{result['sample_ms']:.1f} ms")
    print(f"  pack/unpack exact: {result['pack_exact']}; packed {result['packed_bytes']} bytes "
          f"vs dense {result['dense_bytes']} bytes")
    print(f"  2:4 CUTLASS export (float16): values {result['cutlass_values']}, meta "
          f"{result['cutlass_meta']} {result['cutlass_meta_dtype']}; round trip exact: "
          f"{result['cutlass_roundtrip_exact']}")
    print(f"  spmm vs dense matmul: max abs error {result['spmm_max_abs_err']:.2e}")
