"""The conformance suite judged: it must fail broken backends on the right clause, pass the
reference, refuse unknown or incomplete backends loudly, and report what it ran."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import spikenm.reference as reference
from spikenm.conformance import command
from spikenm.conformance.registry import CHECKS, UNCOVERED, checks_using
from spikenm.conformance.runner import FAILING, XFAIL_DIR, RunConfig, SuiteResult, read_xfails, run_suite
from spikenm.conformance.selection import BackendSelectionError, load_backend

from conformance_helpers import Wrapped

QUICK = RunConfig(profile="ci", max_examples=5, shrink=False)
"""Few examples and no shrinking: enough for the broken backends below, fast."""


class Missing(Wrapped):
    """A backend lacking one protocol member."""

    def __init__(self, inner: Any, name: str, missing: str) -> None:
        super().__init__(inner, name)
        self._missing = missing

    def __getattr__(self, item: str) -> Any:
        if item == self._missing:
            raise AttributeError(item)
        return getattr(self._inner, item)


def _higher_index_wins(scores: np.ndarray, n: int, m: int) -> np.ndarray:
    flipped = scores.reshape(-1, m)[:, ::-1]
    return reference.topn_mask(np.ascontiguousarray(flipped), n, m)[:, ::-1].reshape(scores.shape)


def _double_gradient(*args: Any) -> np.ndarray:
    return 2 * reference.sample_mask_vjp(*args)


def _unsorted_pack(w: np.ndarray, keep: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    values, indices = reference.pack(w, keep, n, m)
    shape = values.shape
    flip = (lambda a: a.reshape(-1, n)[:, ::-1].reshape(shape))
    return flip(values), flip(indices)


def _soft_sums_to_one(scores: np.ndarray, n: int, m: int, temperature: float) -> np.ndarray:
    return reference.relaxed_topn(scores, n, m, temperature) / n


def _uniform_noise(x: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(x.shape).astype(x.dtype)


def _torch_returning_numpy() -> Wrapped:
    torch_backend = load_backend("torch")

    def sample_mask(*args: Any) -> np.ndarray:
        return torch_backend.to_numpy(torch_backend.sample_mask(*args))

    return Wrapped(torch_backend, "torch-returns-numpy", sample_mask=sample_mask)


BROKEN = {
    "ties to the higher index": (
        lambda: Wrapped(reference, "broken-ties", topn_mask=_higher_index_wins),
        "S1.2", {"S0.1", "S1.2", "S1.8"},
    ),
    "gradient off by 2x": (
        lambda: Wrapped(reference, "broken-gradient", sample_mask_vjp=_double_gradient),
        "S1.5", {"S1.5"},
    ),
    "pack indices unsorted in a block": (
        lambda: Wrapped(reference, "broken-pack", pack=_unsorted_pack),
        "S3.2", {"S0.1", "S3.1", "S3.2", "S3.3"},
    ),
    "NumPy results for torch input": (
        _torch_returning_numpy,
        "S1.1", {"S1.1", "S1.4", "S1.7:sampling"},
    ),
    "soft mask summing to 1, not n": (
        lambda: Wrapped(reference, "broken-soft", relaxed_topn=_soft_sums_to_one),
        "S1.3", {"S1.3", "S1.4", "S2.11"},  # the inclusion targets of S2.11 use relaxed_topn
    ),
    "uniform instead of Gumbel noise": (
        lambda: Wrapped(reference, "broken-noise", gumbel_like=_uniform_noise),
        "S1.6", {"S1.6", "S1.7:sampling"},
    ),
}


def _credit_ignoring_signed(x: np.ndarray, d: np.ndarray, w: np.ndarray, decay: float,
                            signed: bool = False) -> np.ndarray:
    return reference.eligibility_credit(x, d, w, decay)


def _upper_median_scores(credits: np.ndarray, m: int, gated: bool) -> np.ndarray:
    z = reference.credit_scores(credits, m, False)
    if not gated:
        return z
    mass = credits.reshape(-1, m).sum(axis=1, keepdims=True)
    median = np.sort(mass[:, 0])[mass.shape[0] // 2]
    gate = np.where(mass + median > 0, mass / np.where(mass + median > 0, mass + median, 1), 0)
    return (z.reshape(-1, m) * gate).astype(credits.dtype).reshape(credits.shape)


def _array_mean_scores(credits: np.ndarray, m: int, gated: bool) -> np.ndarray:
    return (credits / (credits.mean() + 1e-12)).astype(credits.dtype)


BROKEN_EID = {
    # flaw: (backend, check that must fail, checks that may fail); the S2.9-S2.11 checks run.
    "signed ignored (abs before the time sum)": (
        lambda: Wrapped(reference, "broken-signed", eligibility_credit=_credit_ignoring_signed),
        "S2.9", {"S2.9"},
    ),
    "upper median in the gate": (
        lambda: Wrapped(reference, "broken-median", credit_scores=_upper_median_scores),
        "S2.10", {"S2.10", "S2.11"},
    ),
    "scores over the mean of the whole array": (
        lambda: Wrapped(reference, "broken-scores", credit_scores=_array_mean_scores),
        "S2.10", {"S2.10", "S2.11"},
    ),
}


def _failed(result: SuiteResult) -> dict[str, Any]:
    return {r.id: r for r in result.results if r.status in FAILING}


@pytest.mark.parametrize("flaw", list(BROKEN))
def test_broken_backend_fails_the_right_clause(flaw: str) -> None:
    build, clause, allowed = BROKEN[flaw]
    result = run_suite(build(), QUICK)
    failed = _failed(result)
    assert clause in failed, f"{flaw}: {clause} did not fail; failures: {sorted(failed)}"
    assert set(failed) <= allowed, f"{flaw}: unexpected failures {sorted(set(failed) - allowed)}"
    report = failed[clause]
    assert report.status == "FAIL"
    assert report.message and f"# {clause}:" in report.repro
    assert not result.ok


@pytest.mark.parametrize("flaw", list(BROKEN_EID))
def test_broken_eid_primitive_fails_the_right_clause(flaw: str) -> None:
    build, clause, allowed = BROKEN_EID[flaw]
    config = RunConfig(profile="ci", max_examples=5, shrink=False, clauses=("S2.9", "S2.10", "S2.11"))
    result = run_suite(build(), config)
    failed = _failed(result)
    assert {r.id for r in result.results} == {"S2.9", "S2.10", "S2.11", "S2.11:api"}
    assert clause in failed, f"{flaw}: {clause} did not fail; failures: {sorted(failed)}"
    assert set(failed) <= allowed, f"{flaw}: unexpected failures {sorted(set(failed) - allowed)}"
    assert f"# {clause}:" in failed[clause].repro and not result.ok


def test_variant_failure_snippet_calls_the_core_composition() -> None:
    """S2.11 runs `spikenm.eid_variants.targets` on the backend; its snippet says so."""
    backend = Wrapped(reference, "broken-scores", credit_scores=_array_mean_scores)
    result = run_suite(backend, RunConfig(profile="ci", max_examples=5, shrink=False, clauses=("S2.11",)))
    repro = _failed(result)["S2.11"].repro
    assert "from spikenm import eid_variants" in repro and "eid_variants.targets(be, " in repro


def _spec_clause_ids() -> list[str]:
    from spikenm import spec_path

    return re.findall(r"\*\*(S\d+\.\d+[a-z]?) ", spec_path().read_text(encoding="utf-8"))


def test_every_array_clause_has_a_check_or_a_stated_reason() -> None:
    """Each clause of SPEC S0-S3 is covered by an array-backend check or listed in
    UNCOVERED with the reason (S2.9, S2.10, S2.11 and S2.12 included)."""
    clauses = [c for c in _spec_clause_ids() if c.split(".")[0] in ("S0", "S1", "S2", "S3")]
    assert {"S2.9", "S2.10", "S2.11", "S2.12"} <= set(clauses)
    covered = {c for check in CHECKS for c in check.covers}
    assert [c for c in clauses if c not in covered and c not in UNCOVERED] == []
    assert set(UNCOVERED) <= set(clauses) and not set(UNCOVERED) & covered


def test_every_spec_clause_is_cited_by_a_test() -> None:
    """Every clause id of SPEC.md appears in a test or conformance module, as ``S2.10``
    or in a test name as ``S2_10`` (never as the prefix of a longer id)."""
    here = Path(__file__).resolve().parent
    import spikenm.conformance as suite

    files = sorted(here.glob("*.py")) + sorted(Path(suite.__file__).resolve().parent.glob("*.py"))
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    uncited = [c for c in _spec_clause_ids()
               if not re.search(rf"(?<![\w.]){re.escape(c)}(?![\w]|\.\d)", text)
               and not re.search(rf"(?<![0-9A-Za-z]){re.escape(c.replace('.', '_'))}(?![0-9a-z])", text)]
    assert uncited == []


def test_numpy_for_torch_input_is_named_as_a_type_error() -> None:
    result = run_suite(_torch_returning_numpy(), RunConfig(profile="ci", max_examples=2, shrink=False, clauses=("S1.1",)))
    message = _failed(result)["S1.1"].message
    assert "numpy.ndarray" in message and "torch.Tensor" in message


def test_unsorted_pack_names_the_order_rule() -> None:
    result = run_suite(Wrapped(reference, "broken-pack", pack=_unsorted_pack),
                       RunConfig(profile="ci", max_examples=2, shrink=False, clauses=("S3.2",)))
    assert "pack(" in _failed(result)["S3.2"].message


def test_reproduction_snippet_reruns_the_failing_call() -> None:
    backend = Wrapped(reference, "broken-ties", topn_mask=_higher_index_wins)
    result = run_suite(backend, RunConfig(profile="ci", max_examples=3, clauses=("S1.2",)))
    repro = _failed(result)["S1.2"].repro
    lines = repro.splitlines()
    assert lines[0] == "import numpy as np"
    assert any(line.startswith("be = ...") for line in lines)
    body = "\n".join(line for line in lines if not line.startswith("be = "))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(body, "<repro>", "exec"), {"be": backend})
    assert out.getvalue().strip(), "the snippet printed nothing"


def test_array_literals_rebuild_the_exact_bits() -> None:
    from spikenm.conformance.repro import array_literal

    a = np.array([[0.1, -0.0], [np.float32(1e-30), 3.0]], dtype=np.float32)
    rebuilt = eval(array_literal(a), {"np": np})
    assert rebuilt.dtype == a.dtype and np.array_equal(rebuilt.view(np.uint32), a.view(np.uint32))
    nan = np.array([np.nan, 1.0], dtype=np.float16)
    assert np.array_equal(eval(array_literal(nan), {"np": np}).view(np.uint16), nan.view(np.uint16))


def test_reference_passes_every_clause() -> None:
    result = run_suite("numpy", RunConfig(profile="ci", max_examples=5))
    assert result.ok, "\n".join(f"{r.id}: {r.message}" for r in result.results if r.status != "pass")
    assert {r.status for r in result.results} == {"pass"}
    assert [r.id for r in result.results] == [c.id for c in CHECKS]


def test_missing_member_is_refused_with_the_clauses_that_need_it() -> None:
    with pytest.raises(BackendSelectionError, match=r"eid_loss_vjp \(needed by S2.7\)"):
        run_suite(Missing(reference, "no-eid-vjp", "eid_loss_vjp"), QUICK)
    with pytest.raises(BackendSelectionError, match=r"missing: pack \(needed by S0.1, S3.1"):
        run_suite(Missing(reference, "no-pack", "pack"), QUICK)
    assert checks_using("gumbel_like") == ["S1.6", "S1.6:api", "S1.7:sampling"]
    assert checks_using("credit_scores") == ["S2.10", "S2.11", "S2.11:api"]
    with pytest.raises(BackendSelectionError, match=r"credit_scores \(needed by S2.10, S2.11, S2.11:api\)"):
        run_suite(Missing(reference, "no-scores", "credit_scores"), QUICK)


@pytest.mark.parametrize("spec", [None, "", "tensorflow", "spikenm.no_such_module:BACKEND", "spikenm.api:NOPE"])
def test_unknown_backend_fails_loudly(spec: str | None) -> None:
    with pytest.raises(BackendSelectionError) as info:
        run_suite(spec, QUICK)
    assert str(info.value)


def test_command_line_refuses_a_missing_backend(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SPIKENM_BACKEND", raising=False)
    assert command.main(["--clauses", "S1.2"]) == 2
    assert "no backend selected" in capsys.readouterr().err
    assert command.main(["--backend", "nonsense", "--clauses", "S1.2"]) == 2
    assert command.main(["--backend", "numpy", "--clauses", "S9.9"]) == 2
    assert "unknown clause" in capsys.readouterr().err


def test_command_line_table_and_json_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "report.json"
    status = command.main(["--backend", "numpy", "--profile", "ci", "--max-examples", "3",
                           "--clauses", "S1.2,S3.4", "--report", str(path)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "S1.2" in printed and "S3.4:api" in printed and "PASSED" in printed
    report = json.loads(path.read_text())
    meta = report["metadata"]
    assert report["passed"] is True and report["schema"] == "spikenm.conformance.report/1"
    assert meta["backend"]["selected_as"] == "numpy" and meta["backend"]["name"] == "numpy"
    assert meta["backend"]["framework"] == "numpy" and meta["backend"]["framework_version"] == np.__version__
    assert set(meta["versions"]) >= {"spikenm", "numpy", "hypothesis", "python"}
    assert meta["platform"]["system"] and meta["hypothesis"]["profile"] == "ci"
    assert meta["hypothesis"]["derandomize"] is True and meta["hypothesis"]["seed"] is None
    assert [c["id"] for c in report["checks"]] == ["S1.2", "S1.4:api", "S3.4:api"]  # S1.4:api covers S1.2 too
    assert all(c["examples"] > 0 and c["status"] == "pass" for c in report["checks"])


def test_command_line_exits_non_zero_on_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = tmp_path / "broken_backend_module.py"
    module.write_text(
        "import numpy as np\nimport spikenm.reference as ref\n"
        "import sys\nfrom spikenm.reference import *\nname = 'broken-module'\n"
        "BACKEND = sys.modules[__name__]\n"
        "def topn_mask(scores, n, m):\n"
        "    f = np.ascontiguousarray(scores.reshape(-1, m)[:, ::-1])\n"
        "    return ref.topn_mask(f, n, m)[:, ::-1].reshape(scores.shape)\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        status = command.main(["--backend", "broken_backend_module:BACKEND", "--max-examples", "3",
                               "--no-shrink", "--seed", "7", "--clauses", "S1.2", "--report", str(tmp_path / "r.json")])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("broken_backend_module", None)
    assert status == 1
    printed = capsys.readouterr().out
    assert "FAILED" in printed and "be = load_backend('broken_backend_module:BACKEND')" in printed
    meta = json.loads((tmp_path / "r.json").read_text())["metadata"]
    assert meta["hypothesis"]["seed"] == 7 and meta["hypothesis"]["derandomize"] is False


def test_xfail_file_expected_failure_and_stale_entry(tmp_path: Path) -> None:
    listed = tmp_path / "xfails.txt"
    listed.write_text("# known problems\nS1.5   # gradient scaled twice\n")
    broken = Wrapped(reference, "broken-gradient", sample_mask_vjp=_double_gradient)
    config = RunConfig(profile="ci", max_examples=3, shrink=False, clauses=("S1.5", "S1.2"), xfail_file=str(listed))
    result = run_suite(broken, config)
    assert {r.id: r.status for r in result.results} == {"S1.2": "pass", "S1.4:api": "n/a", "S1.5": "xfail"}
    assert result.ok and result.xfails == {"S1.5": "gradient scaled twice"}
    stale = run_suite("numpy", config)
    assert {r.id: r.status for r in stale.results} == {"S1.2": "pass", "S1.4:api": "pass", "S1.5": "XPASS"}
    assert not stale.ok
    listed.write_text("S7.1\n")
    with pytest.raises(ValueError, match="S7.1"):
        read_xfails(listed)


def test_builtin_xfail_files_are_empty() -> None:
    for name in ("numpy", "torch", "jax", "array_api_strict"):
        path = XFAIL_DIR / f"{name}.txt"
        assert path.exists() and read_xfails(path) == {}, path


def test_forward_only_backend_reports_gradients_not_applicable() -> None:
    forward_only = Wrapped(reference, "forward-only", differentiable=False)
    result = run_suite(forward_only, RunConfig(profile="ci", max_examples=2, clauses=("S1.5", "S2.7", "S1.2")))
    status = {r.id: r.status for r in result.results}
    assert status == {"S1.2": "pass", "S1.4:api": "n/a", "S1.5": "n/a", "S2.7": "n/a"}
    assert result.ok


def test_pytest_entry_point(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SPIKENM_BACKEND"}
    # The documented command: the plugin comes from the package's pytest11 entry point.
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--pyargs", "spikenm.conformance"]
    report = tmp_path / "pytest-report.json"
    done = subprocess.run(base + ["--spikenm-backend", "numpy", "--spikenm-profile", "ci",
                                  "--spikenm-max-examples", "2", "-k", "S1.2 or S2.6",
                                  "--spikenm-report", str(report)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    assert {c["id"] for c in json.loads(report.read_text())["checks"]} == {"S1.2", "S2.6", "S2.6:api"}
    missing = subprocess.run(base, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 4 and "no backend selected" in missing.stdout + missing.stderr
