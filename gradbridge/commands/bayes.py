"""``gradbridge bayes``: the probability of a condition after a positive test, and why it is low.

Prints the posterior and the same result as natural frequencies (out of 10,000 people tested,
how many positives are real), which is what makes the base-rate fallacy visible.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "bayes", help="P(condition | positive test) by Bayes' theorem, with natural frequencies",
        description="P(condition | positive test) by Bayes' theorem, with natural frequencies.",
    )
    parser.add_argument("--prior", type=float, required=True,
                        help="P(condition) before the test, the base rate, e.g. 0.01")
    parser.add_argument("--sensitivity", type=float, required=True,
                        help="P(positive | condition), e.g. 0.95")
    parser.add_argument("--false-positive-rate", type=float, required=True,
                        help="P(positive | no condition), e.g. 0.05")
    parser.add_argument("--population", type=integer, default=10_000,
                        help="people in the natural-frequency explanation (default 10000, "
                             "at most 1e15)")
    parser.add_argument("--backend", help="numpy, jax or torch (default: configured choice)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N, gpu or auto")
    parser.add_argument("--dtype", help="float32 or float64 (float64 for all digits)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gradbridge.config import get_backend
    from gradbridge.core import probability

    probability.check_population(args.population, "--population")
    be = get_backend(args.backend, device=args.device, dtype=args.dtype)
    inputs = (args.prior, args.sensitivity, args.false_positive_rate)
    posterior = float(be.to_numpy(probability.posterior(be, *inputs)))
    evidence = float(be.to_numpy(probability.evidence(be, *inputs)))
    if args.json:
        print(json.dumps({
            "posterior": posterior, "evidence": evidence, "prior": args.prior,
            "sensitivity": args.sensitivity, "false_positive_rate": args.false_positive_rate,
            "backend": be.name, "device": be.device, "dtype": be.dtype,
        }, indent=2))
        return 0
    counts = probability.natural_frequencies(*inputs, population=args.population)
    print(f"P(condition | positive test) = {_percent(posterior)}")
    print(f"P(positive test)             = {_percent(evidence)}")
    print()
    print(f"Of {counts.population:,} people tested:")
    print(f"  {counts.sick:,} have the condition: {counts.true_positives:,} test positive, "
          f"{counts.false_negatives:,} test negative")
    print(f"  {counts.healthy:,} do not: {counts.false_positives:,} test positive anyway, "
          f"{counts.true_negatives:,} test negative")
    if counts.positives:
        print(f"So {counts.true_positives:,} of the {counts.positives:,} positive results are "
              f"real ({_percent(counts.true_positives / counts.positives)}, rounded counts).")
    else:
        print("No one in this many people would test positive; try a larger --population.")
    print(f"(computed on {be.name}, {be.device}, {be.dtype})")
    return 0


def integer(text: str) -> int:
    """An integer written plainly or in scientific notation (``1e6``); argparse reports others."""
    try:
        return int(text)
    except ValueError:
        number = float(text)  # a ValueError here is argparse's "invalid value" message
    if not number.is_integer():
        raise ValueError(text)
    return int(number)


def _percent(p: float) -> str:
    """One decimal as a rule; more digits where that would round a real chance to 0% or 100%."""
    if 0 < p < 0.001:
        return f"{p * 100:.2g}%"
    if 0.999 < p < 1:
        return f"{p:.4%}"
    return f"{p:.1%}"
