"""What one call through a gradbridge backend costs next to the framework's own call.

On tiny arrays (10 float32 elements) an operation is almost all Python and dispatch, so any
wrapper gradbridge adds shows up in full. For each backend this times ``be.add``,
``be.matmul`` and ``be.sum`` against ``np``/``jnp``/``torch``'s ``add``, ``matmul``, ``sum``
on the same arrays: ``timeit`` with a ``number`` of calls chosen so that each repeat takes at
least 0.2 s, the two sides taking turns (and turns going first), the median repeat reported.
JAX dispatches asynchronously; both sides are timed the same way (the call returns once the
work is queued), which is the overhead being asked about. Target: ratio <= 1.3.

    python benchmarks/op_overhead.py [--backends numpy,jax,torch] [--repeats 7] [--json PATH]
    python benchmarks/op_overhead.py --unary    # also every one-array elementwise function of
                                                # core/ops.py, on values in (0.1, 0.9)
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import machine
import numpy as np

import gradbridge as gb

TARGET_RATIO = 1.3
NATIVE_NAMESPACE = {"numpy": "numpy", "jax": "jax.numpy", "torch": "torch"}
OPERATIONS = ("add", "matmul", "sum")


def operands(be: Any) -> dict[str, tuple[Any, ...]]:
    """Backend arrays for each operation: 10 elements each, drawn on the host."""
    rng = np.random.default_rng(0)
    vector = [be.from_host(rng.standard_normal(10)) for _ in range(2)]
    matrices = (be.from_host(rng.standard_normal((2, 5))),
                be.from_host(rng.standard_normal((5, 2))))
    return {"add": tuple(vector), "matmul": matrices, "sum": (vector[0],)}


def unary_operands(be: Any) -> dict[str, tuple[Any, ...]]:
    """Every one-array elementwise function of core/ops.py, on 10 values inside every domain."""
    from gradbridge.core import ops

    values = be.from_host(np.linspace(0.1, 0.9, 10))
    return {op.name: (values,) for op in ops.MAIN
            if op.category == "elementwise" and op.differentiable == (0,)
            and op.name not in ("clip", "copysign")}  # those take a second argument


def seconds_per_call(fn: Callable[..., Any], args: tuple[Any, ...], number: int) -> float:
    return timeit.Timer(lambda: fn(*args)).timeit(number) / number


def compare(ours: Callable[..., Any], native: Callable[..., Any], args: tuple[Any, ...],
            repeats: int) -> dict[str, float]:
    """Median seconds per call of each side; both use the number of calls that fills 0.2 s."""
    ours(*args), native(*args)  # warm up: first-call compilation or caching
    number = max(timeit.Timer(lambda: ours(*args)).autorange()[0],
                 timeit.Timer(lambda: native(*args)).autorange()[0])
    times: dict[str, list[float]] = {"gradbridge": [], "native": []}
    sides = [("gradbridge", ours), ("native", native)]
    for repeat in range(repeats):
        for side, fn in sides if repeat % 2 else reversed(sides):  # alternate who goes first
            times[side].append(seconds_per_call(fn, args, number))
    gradbridge_s, native_s = (statistics.median(times[k]) for k in ("gradbridge", "native"))
    return {"gradbridge_us": gradbridge_s * 1e6, "native_us": native_s * 1e6,
            "ratio": gradbridge_s / native_s, "calls_per_repeat": number}


def measure_backend(name: str, repeats: int, unary: bool = False) -> list[dict[str, Any]]:
    be = gb.get_backend(name, dtype="float32")
    namespace = importlib.import_module(NATIVE_NAMESPACE[name])
    rows = []
    cases = {**operands(be), **(unary_operands(be) if unary else {})}
    for op, args in cases.items():
        if not hasattr(namespace, op):  # e.g. torch spells it otherwise: no native to compare
            continue
        try:
            row = compare(getattr(be, op), getattr(namespace, op), args, repeats)
        except (TypeError, ValueError, RuntimeError) as exc:  # e.g. torch's imag of a real
            print(f"{name:<8}{op:<12}not timed: {exc}")
            continue
        rows.append({"backend": name, "op": op, **row})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="numpy,jax,torch",
                        help="comma-separated backends (default: numpy,jax,torch)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per side")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--unary", action="store_true",
                        help="also every one-array elementwise function of core/ops.py")
    args = parser.parse_args()

    info = machine.describe()
    print(f"machine: {info['cpu']}, {info['cpus']} CPUs, python {info['versions']['python']}")
    print(f"float32, 10-element operands; median of {args.repeats} repeats of >= 0.2 s each\n")
    print(f"{'backend':<8}{'op':<12}{'gradbridge us':>15}{'native us':>11}{'ratio':>8}")
    rows: list[dict[str, Any]] = []
    for name in (n.strip() for n in args.backends.split(",") if n.strip()):
        try:
            measured = measure_backend(name, args.repeats, args.unary)
        except gb.GradbridgeError as exc:
            print(f"{name:<8}skipped: {exc}")
            continue
        for row in measured:
            print(f"{row['backend']:<8}{row['op']:<12}{row['gradbridge_us']:>15.2f}"
                  f"{row['native_us']:>11.2f}{row['ratio']:>8.2f}")
        rows.extend(measured)
    worst = max((row["ratio"] for row in rows), default=float("nan"))
    for name in {row["backend"] for row in rows}:
        ratios = [row["ratio"] for row in rows if row["backend"] == name]
        print(f"{name}: median ratio {statistics.median(ratios):.2f}, worst {max(ratios):.2f} "
              f"over {len(ratios)} functions")
    verdict = "meets" if worst <= TARGET_RATIO else "MISSES"
    print(f"\nworst ratio {worst:.3f}: {verdict} the target of <= {TARGET_RATIO}")
    if args.json:
        result = {"rows": rows, "target_ratio": TARGET_RATIO, "worst_ratio": worst,
                  "repeats": args.repeats, "machine": info}
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
