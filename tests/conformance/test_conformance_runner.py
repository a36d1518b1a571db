"""conformance/run.py on synthetic pytest-json-report documents: parsing, summary, exit status
and the xfails file (no run of the suite). Named apart from tests/experiments/test_runner.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("conformance_run", ROOT / "conformance" / "run.py")
assert _spec and _spec.loader
run = importlib.util.module_from_spec(_spec)
sys.modules["conformance_run"] = run  # dataclasses look their module up by name
_spec.loader.exec_module(run)

F = "array_api_tests/test_statistical_functions.py"
S = "array_api_tests/test_special_cases.py::test_unary"


def test(nodeid: str, outcome: str, message: str | None = None) -> dict[str, Any]:
    """One test entry as pytest-json-report writes it."""
    call: dict[str, Any] = {"outcome": "passed" if outcome == "passed" else outcome}
    if message:
        call.update(crash={"message": message}, longrepr=f"long\n{message}")
    return {"nodeid": nodeid, "outcome": outcome, "setup": {"outcome": "passed"}, "call": call}


test.__test__ = False  # type: ignore[attr-defined]  # a helper, not a pytest test

REPORT = {
    "exitcode": 1,
    "collectors": [{"nodeid": "", "outcome": "passed"}],
    "tests": [
        test(f"{F}::test_sum", "passed"),
        test(f"{F}::test_mean", "failed", "AssertionError: mean is not defined in gradbridge"),
        test(f"{F}::test_std[a]", "xfailed", "AssertionError: out.dtype=float32, expected int"),
        test(f"{F}::test_std[b]", "xfailed", "AssertionError: out.dtype=float32, expected int"),
        test(f"{F}::test_var", "xpassed"),
        test(f"{F}::test_max", "error", "TypeError: bad fixture"),
        test(f"{S}[exp(x_i is NaN) -> NaN]", "failed", "AssertionError: out=0.0"),
        test(f"{S}[log(x_i < 0) -> NaN]", "failed", "AssertionError: log is not defined in gb"),
        test(f"{S}[sin(x_i is NaN) -> NaN]", "passed"),
    ],
}
ANCHOR = {"exitcode": 1, "collectors": [],
          "tests": [test(f"{F}::test_sum", "passed"), test(f"{F}::test_mean", "failed", "x")]}


def results() -> list[Any]:
    """A gradbridge run and its anchor parsed from the synthetic reports."""
    return [run.parse_report(run.Target("numpy"), ANCHOR, 2.0),
            run.parse_report(run.Target("numpy", "float64"), REPORT, 3.0)]


def test_parse_report_counts_ids_and_messages() -> None:
    r = results()[1]
    assert r.error is None
    assert r.counts == {"passed": 2, "failed": 3, "xfailed": 2, "xpassed": 1, "error": 1}
    assert r.new_failures[:2] == [f"{F}::test_mean", f"{F}::test_max"]
    assert len(r.not_passing) == 6
    assert r.messages[f"{F}::test_mean"] == "AssertionError: mean is not defined in gradbridge"


@pytest.mark.parametrize("change, error", [
    ({"collectors": [{"nodeid": F, "outcome": "failed"}]}, f"collection error in {F}"),
    ({"exitcode": 3}, "pytest exit code 3"),
    ({"tests": []}, "no tests ran"),
])
def test_a_broken_run_is_an_error(change: dict[str, Any], error: str) -> None:
    r = run.parse_report(run.Target("torch", "float32"), {**REPORT, **change}, 1.0)
    assert r.error == error
    status, line = run.verdict_line([r])
    assert status == 1 and "runs errored: torch-float32" in line


def test_summary_table_and_anchor_comparison() -> None:
    text = run.summary(results(), Path("xfails.txt"))
    assert "| array_api_compat.numpy | - | 1 | 1 | 0 | 0 | 2 | ok |" in text
    assert "| gradbridge numpy | float64 | 2 | 3 | 2 | 1 | 3 | ok |" in text
    # 6 not passing against the anchor's 1 failure; 5 of them the anchor passes or lacks.
    assert "| gradbridge numpy | float64 | 6 | 1 | no | 5 |" in text
    assert f"`{F}::test_max`: TypeError: bad fixture" in text
    assert "1 listed in xfails.txt passed (XPASS" in text


def test_exit_status_new_failures_only_count_for_gradbridge() -> None:
    anchor, ours = results()
    assert run.verdict_line([anchor])[0] == 0  # the anchor's failures are reported only
    status, line = run.verdict_line([anchor, ours])
    assert status == 1 and "numpy-float64 4" in line
    ours.outcomes = {k: v for k, v in ours.outcomes.items() if v not in ("failed", "error")}
    assert run.verdict_line([anchor, ours]) == (0, run.verdict_line([])[1])


def test_module_is_the_exec_form_binding_the_real_backend() -> None:
    assert run.Target("jax").module() == "jax.numpy"
    code = 'import gradbridge as gb; xp = gb.get_backend("torch", dtype="float64")'
    assert run.Target("torch", "float64").module() == f"exec('{code}')"


def test_xfails_round_trip_groups_reasons_and_keeps_hand_written_ones(tmp_path: Path) -> None:
    path = tmp_path / "xfails.txt"
    path.write_text(f"# header\n\n# test_std: float32 std of ints [issue 12] -- fails on: x\n"
                    f"{F}::test_std[a]\n# test_gone: TODO\n{F}::test_gone\n")
    assert run.read_xfails(path) == {f"{F}::test_std[a]": "test_std: float32 std of ints "
                                     "[issue 12]", f"{F}::test_gone": "test_gone: TODO"}
    n = run.write_xfails(path, results(), prune=True, compress=True)
    text = path.read_text()
    entries = run.read_xfails(path)
    assert n == 5 and "test_gone" not in text  # pruned: no run failed it
    # Every collected parametrization of test_std failed: one base id covers them.
    assert entries[f"{F}::test_std"] == "test_std: float32 std of ints [issue 12]"
    assert entries[f"{F}::test_mean"] == "test_mean: missing from the namespace: mean"
    assert entries[f"{F}::test_max"] == "test_max: TODO TypeError: bad fixture"
    assert "-- fails on: numpy-float64\n" in text
    # Special cases: one reason per function tested, not one for all of test_unary.
    assert entries[f"{S}[exp(x_i is NaN) -> NaN]"] == "test_unary[exp]: TODO out=0.0"
    assert entries[f"{S}[log(x_i < 0) -> NaN]"].startswith("test_unary[log]: missing")
    # What the suite reads: no trailing text after an id, comments start the line.
    ids = [s for s in text.splitlines() if s and not s.startswith("#")]
    assert all(s.startswith("array_api_tests/") and s == s.strip() for s in ids)


def test_update_without_prune_keeps_old_entries(tmp_path: Path) -> None:
    path = tmp_path / "xfails.txt"
    path.write_text(f"# test_other: torch only\n{F}::test_other\n")
    run.write_xfails(path, results(), prune=False, compress=False)
    entries = run.read_xfails(path)
    assert entries[f"{F}::test_other"] == "test_other: torch only"
    assert f"{F}::test_std[a]" in entries and f"{F}::test_std" not in entries


def test_project_xfails_file_is_in_the_suites_format() -> None:
    lines = (ROOT / "conformance" / "xfails.txt").read_text().splitlines()
    ids = [s for s in lines if s.strip() and not s.startswith("#")]
    assert all(s.startswith("array_api_tests/") and s == s.strip() for s in ids)
    assert len(ids) == len(set(ids))


def test_options() -> None:
    args = run.parse_args(["--backends", "none", "--dtypes", "float64", "-k", "sum"])
    assert args.backends == [] and args.dtypes == ["float64"] and args.k == "sum"
    with pytest.raises(SystemExit):
        run.parse_args(["--backends", "tensorflow"])


def test_crash_line_quotes_the_error_of_a_pytest_that_could_not_start() -> None:
    log = "ImportError while loading conftest '/x/conftest.py'.\nE   AttributeError: no bool\n"
    assert run.crash_line(log) == "AttributeError: no bool"
    assert run.crash_line("") == "no output"


def test_the_readme_table_of_differences_is_the_xfails_file() -> None:
    """README's "still differ" table is generated from conformance/xfails.txt; they must not
    drift apart (regenerate with `python conformance/run.py --differences`)."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- differences:begin -->\n", 1)[1].split("<!-- differences:end -->")[0]
    assert table == run.differences(run.XFAILS)


def test_differences_groups_reasons_and_names_backends(tmp_path: Path) -> None:
    """One row per reason, over every test group it covers, with the frameworks it failed on."""
    path = tmp_path / "xfails.txt"
    path.write_text(
        "# header line\n\n"
        f"# test_sum: the reason{run.ANCHOR_TOO} -- fails on: torch-float32 jax-float64\n"
        f"{F}::test_sum\n"
        f"# test_prod: the reason{run.ANCHOR_TOO} -- fails on: torch-float64\n"
        f"{F}::test_prod\n"
        "# test_std: another reason -- fails on: numpy (random examples)\n"
        f"{F}::test_std[a]\n{F}::test_std[b]\n")
    lines = run.differences(path).splitlines()[2:]
    assert lines == [
        "| the reason | jax, torch | `test_prod`, `test_sum` | yes |",
        "| another reason | numpy (random examples) | `test_std` | - |",
    ]
