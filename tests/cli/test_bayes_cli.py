"""``gradbridge bayes`` through the real entry point: human output, JSON, and bad input."""

from __future__ import annotations

import json

import pytest
from conftest import BACKENDS, make_backend

from gradbridge.cli import main

TUTORIAL_ARGS = ["bayes", "--prior", "0.01", "--sensitivity", "0.95",
                 "--false-positive-rate", "0.05"]


def test_prints_posterior_and_natural_frequencies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TUTORIAL_ARGS, "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "= 16.1%" in out  # the tutorial's ~16.1%
    # By hand: 100 of 10,000 ill, 95 of them positive; 9,900 healthy, 495 positive anyway.
    assert "Of 10,000 people tested" in out
    assert "100 have the condition: 95 test positive" in out
    assert "9,900 do not: 495 test positive anyway" in out
    assert "95 of the 590 positive results are real" in out


@pytest.mark.parametrize("name", BACKENDS)
def test_json_on_every_backend(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    make_backend(name, "float64")  # skips (or fails when required) if the framework is absent
    assert main([*TUTORIAL_ARGS, "--backend", name, "--dtype", "float64", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # Reference: the tutorial's formula in plain Python floats; float64 agrees to 1e-12.
    evidence = 0.95 * 0.01 + 0.05 * (1 - 0.01)
    assert result["posterior"] == pytest.approx(0.95 * 0.01 / evidence, abs=1e-12)
    assert result["evidence"] == pytest.approx(evidence, abs=1e-12)
    assert {k: result[k] for k in ("prior", "sensitivity", "false_positive_rate", "backend",
                                   "dtype")} == {
        "prior": 0.01, "sensitivity": 0.95, "false_positive_rate": 0.05, "backend": name,
        "dtype": "float64"}


@pytest.mark.parametrize("flag, value, name", [
    ("--prior", "1.5", "prior"), ("--sensitivity", "-0.2", "sensitivity"),
    ("--false-positive-rate", "nan", "false_positive_rate"),
])
def test_bad_probability_exits_2_with_one_error_line(
        flag: str, value: str, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = list(TUTORIAL_ARGS)
    args[args.index(flag) + 1] = value
    assert main([*args, "--backend", "numpy"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {name}=")


def test_impossible_positive_test_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bayes", "--prior", "0", "--sensitivity", "0.9", "--false-positive-rate", "0",
            "--backend", "numpy"]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("error: P(positive test) = 0")


def test_missing_or_non_numeric_argument_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["bayes", "--prior", "0.1"], [*TUTORIAL_ARGS[:-1], "five%"]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.startswith("error: ")


def test_float32_underflow_suggests_float64(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bayes", "--prior", "1e-50", "--sensitivity", "0.9", "--false-positive-rate", "0",
            "--backend", "numpy"]
    assert main([*args, "--dtype", "float32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: P(positive test) = 0 in float32, but it is 9e-51 in float64")
    assert "--dtype float64" in err and err.count("\n") == 1
    assert main([*args, "--dtype", "float64"]) == 0
    assert "9e-49%" in capsys.readouterr().out  # P(positive test) as a percentage


@pytest.mark.parametrize("value", ["1e30", "1" + "0" * 30])
def test_population_beyond_exact_counts_exits_2(value: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TUTORIAL_ARGS, "--backend", "numpy", "--population", value]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("error: --population=1e+30 is not valid")
    assert "1,000,000,000,000,000" in captured.err


def test_population_in_scientific_notation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TUTORIAL_ARGS, "--backend", "numpy", "--population", "1e6"]) == 0
    assert "Of 1,000,000 people tested" in capsys.readouterr().out
