"""Where float arithmetic, not the inputs, would decide the answer: float32 underflow of the
evidence, and populations too large for exact float64 counts."""

from __future__ import annotations

import numpy as np
import pytest

from gradbridge.core import probability as pr
from gradbridge.core.backend import Backend, InvalidArgument


@pytest.mark.parametrize("call", [pr.evidence, pr.posterior])
def test_evidence_that_underflows_float32_is_not_called_impossible(backend32: Backend,
                                                                   call: object) -> None:
    """0.9 * 1e-50 is 9e-51 in float64 but 0 in float32 (smallest subnormal ~1.4e-45)."""
    with pytest.raises(InvalidArgument) as info:
        call(backend32, 1e-50, 0.9, 0.0)  # type: ignore[operator]
    message = str(info.value)
    assert "underflow" in message and "9e-51 in float64" in message
    assert "--dtype float64" in message and "impossible under" not in message


def test_underflow_names_the_element(backend32: Backend) -> None:
    with pytest.raises(InvalidArgument, match=r"at element \(1,\) in float32"):
        pr.evidence(backend32, [0.5, 1e-50], 0.9, 0.0)


def test_float64_computes_what_float32_cannot(backend64: Backend) -> None:
    evidence = float(np.asarray(backend64.to_numpy(pr.evidence(backend64, 1e-50, 0.9, 0.0))))
    assert evidence == pytest.approx(9e-51, rel=1e-12)


def test_a_truly_impossible_test_is_still_called_impossible(backend32: Backend) -> None:
    with pytest.raises(InvalidArgument, match="impossible under these inputs"):
        pr.evidence(backend32, 0.0, 0.9, 0.0)


def test_population_is_bounded_where_float64_counts_are_exact() -> None:
    counts = pr.natural_frequencies(0.01, 0.9, 0.1, population=pr.MAX_POPULATION)
    assert counts.sick == 10**13 and counts.true_positives == 9 * 10**12
    with pytest.raises(InvalidArgument, match=r"population=1e\+30 .* to 1,000,000,000,000,000"):
        pr.natural_frequencies(0.01, 0.9, 0.1, population=10**30)
