"""What one call of every namespace function costs through gradbridge next to the framework's own.

On small operands (10-element float32 vectors, 3x3 well-conditioned matrices, int64 arrays
for bitwise and indexing functions, bool arrays for logical ones) a call is almost all Python
and dispatch, so any wrapper gradbridge adds shows up in full. For every function of
``core/ops.py`` (MAIN and LINALG) and each backend this times ``be.<name>`` against the same
name of the framework's Array API namespace (``array_api_compat.numpy``,
``array_api_compat.torch``, ``jax.numpy``) and, where gradbridge binds another framework
function than that namespace's (``np.add``, ``torch.matmul``), against that raw function too:
the sides take turns in every repeat (and turns going first), each repeat runs a ``number``
of calls chosen to fill ``--min-time`` seconds, and the median repeat is reported. JAX
dispatches asynchronously; both sides are timed the same way (the call returns once the work
is queued), which is the overhead being asked about. Target (issue 11): per backend a median
ratio <= 1.1 and a worst <= 1.5.

    python benchmarks/op_overhead.py [--backends numpy,jax,torch] [--repeats 7]
                                     [--min-time 0.05] [--only sin,linalg.solve] [--json PATH]
    python benchmarks/op_overhead.py --floor   # sin through gradbridge, through the least
                                               # Python wrapper, and bare, at 10 to 1e5 values
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
from gradbridge.core import ops

TARGET_MEDIAN, TARGET_WORST = 1.1, 1.5
NAMESPACE = {"numpy": "array_api_compat.numpy", "jax": "jax.numpy",
             "torch": "array_api_compat.torch"}
Call = tuple[tuple[Any, ...], dict[str, Any]]


def calls(be: Any) -> dict[str, Call]:
    """A small valid call of every function of core/ops.py MAIN and LINALG: its arguments."""
    rng = np.random.default_rng(0)
    v, w = (be.from_host(rng.uniform(0.1, 0.9, 10)) for _ in range(2))
    one_plus = be.from_host(1.0 + rng.uniform(0.1, 0.9, 10))
    z = be.asarray((rng.standard_normal(10) + 1j * rng.standard_normal(10)).astype(np.complex64))
    i, j = (be.from_host(rng.integers(1, 100, 10)) for _ in range(2))
    shifts = be.from_host(rng.integers(0, 4, 10))
    p, q = (be.from_host(rng.random(10) < 0.5) for _ in range(2))
    indices = be.from_host(rng.permutation(10))
    half = rng.standard_normal((3, 3))
    m = be.from_host(half)
    spd = be.from_host(half @ half.T + 3.0 * np.eye(3))  # well conditioned (SPD)
    u3, v3 = be.from_host(rng.standard_normal(3)), be.from_host(rng.standard_normal(3))
    sorted_v = be.sort(v)
    row = be.reshape(v, (1, 10))

    def a(*args: Any, **kwargs: Any) -> Call:
        return args, kwargs

    table: dict[str, Call] = {
        # creation
        "arange": a(10), "empty": a((10,)), "empty_like": a(v), "eye": a(3),
        "full": a((10,), 1.5), "full_like": a(v, 1.5), "linspace": a(0.0, 1.0, 10),
        "meshgrid": a(v, w), "ones": a((10,)), "ones_like": a(v), "zeros": a((10,)),
        "zeros_like": a(v), "from_dlpack": a(v), "asarray": a(v), "tril": a(m), "triu": a(m),
        # data type
        "astype": a(v, be.float64), "can_cast": a(be.float32, be.float64),
        "finfo": a(be.float32), "iinfo": a(be.int32), "isdtype": a(be.float32, "real floating"),
        "result_type": a(v, i),
        # elementwise, two arguments
        "clip": a(v, 0.2, 0.8), "copysign": a(v, w), "nextafter": a(v, w),
        **{name: a(i, shifts) for name in ("bitwise_left_shift", "bitwise_right_shift")},
        **{name: a(i, j) for name in ("bitwise_and", "bitwise_or", "bitwise_xor")},
        "bitwise_invert": a(i),
        **{name: a(p, q) for name in ("logical_and", "logical_or", "logical_xor")},
        "logical_not": a(p),
        "acosh": a(one_plus), "conj": a(z), "real": a(z), "imag": a(z),
        # indexing
        "take": a(v, indices), "take_along_axis": a(v, indices),
        # linear algebra
        "matmul": a(m, m), "tensordot": a(m, m), "vecdot": a(v, w), "matrix_transpose": a(m),
        # manipulation
        "broadcast_arrays": a(v, w), "concat": a([v, w]), "stack": a([v, w]),
        "broadcast_to": a(v, (2, 10)), "expand_dims": a(v, 0), "flip": a(v),
        "moveaxis": a(m, 0, 1), "permute_dims": a(m, (1, 0)), "repeat": a(v, 2),
        "reshape": a(v, (2, 5)), "roll": a(v, 1), "squeeze": a(row, 0), "tile": a(v, (2,)),
        "unstack": a(m),
        # searching, sets, sorting, statistics, utilities
        "searchsorted": a(sorted_v, w), "where": a(p, v, w),
        **{name: a(i) for name in ("unique_all", "unique_counts", "unique_inverse",
                                   "unique_values")},
        "all": a(p), "any": a(p), "__array_namespace_info__": a(),
        # linalg
        **{f"linalg.{name}": a(spd) for name in ops.names(ops.LINALG)},
        "linalg.matrix_power": a(spd, 2), "linalg.vector_norm": a(v),
        "linalg.cross": a(u3, v3), "linalg.matmul": a(m, spd), "linalg.outer": a(v, w),
        "linalg.solve": a(spd, m), "linalg.tensordot": a(m, spd), "linalg.vecdot": a(v, w),
    }
    for op in ops.MAIN:  # the rest: elementwise on (v, w) or v, everything else on v
        if op.name not in table:
            two = op.category == "elementwise" and _takes_two(op)
            table[op.name] = a(v, w) if two else a(v)
    return table


TWO_ARRAY_ELEMENTWISE = {"equal", "not_equal", "greater", "greater_equal", "less", "less_equal",
                         "floor_divide", "remainder"}
"""The non-differentiable elementwise functions of two arrays left to the generic builder."""


def _takes_two(op: ops.Op) -> bool:
    return op.differentiable == ops.BINARY or op.name in TWO_ARRAY_ELEMENTWISE


def lookup(namespace: Any, name: str) -> Any:
    """``namespace.name`` or ``namespace.linalg.name`` for a dotted name; None if absent."""
    for part in name.split("."):
        namespace = getattr(namespace, part, None)
    return namespace


def raw_function(ours: Any, native: Any) -> Any:
    """The framework function gradbridge's guard calls, where it is not the namespace's own
    (None where it is, or where gradbridge's function is written by hand)."""
    inner = getattr(ours, "__wrapped__", None)  # one level: the guard's own (functools.wraps)
    if inner is None or inner is native or getattr(inner, "__module__", "").startswith(
            "gradbridge"):
        return None
    return inner


def seconds_per_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                     number: int) -> float:
    return timeit.Timer(lambda: fn(*args, **kwargs)).timeit(number) / number


def compare(sides: dict[str, Callable[..., Any]], call: Call, repeats: int,
            min_time: float) -> dict[str, float]:
    """Median seconds per call of each side, all sides taking turns in every repeat with the
    same number of calls (the most that any side needs to fill ``min_time``)."""
    args, kwargs = call
    for fn in sides.values():
        fn(*args, **kwargs)  # warm up: first-call compilation or caching
    fastest = min(seconds_per_call(fn, args, kwargs, 100) for fn in sides.values())
    number = max(1, int(min_time / fastest))
    times: dict[str, list[float]] = {side: [] for side in sides}
    order = list(sides.items())
    for repeat in range(repeats):
        turn = order[repeat % len(order):] + order[:repeat % len(order)]
        for side, fn in turn if repeat % 2 else reversed(turn):
            times[side].append(seconds_per_call(fn, args, kwargs, number))
    return {f"{side}_us": statistics.median(t) * 1e6 for side, t in times.items()}


def measure_backend(name: str, repeats: int, min_time: float,
                    only: set[str] | None) -> list[dict[str, Any]]:
    be = gb.get_backend(name, dtype="float32")
    namespace = importlib.import_module(NAMESPACE[name])
    rows = []
    for function, call in calls(be).items():
        if only and function not in only:
            continue
        ours, native = lookup(be, function), lookup(namespace, function)
        if native is None:
            print(f"{name:<8}{function:<26}not timed: {NAMESPACE[name]} lacks it")
            continue
        sides = {"gradbridge": ours, "namespace": native}
        raw = raw_function(ours, native)
        if raw is not None:
            sides["raw"] = raw
        try:
            row = compare(sides, call, repeats, min_time)
        except Exception as exc:  # a framework that refuses this call: say so, time the rest
            print(f"{name:<8}{function:<26}not timed: {type(exc).__name__}: {exc}"[:160])
            continue
        row["ratio"] = row["gradbridge_us"] / row["namespace_us"]
        if "raw_us" in row:
            row["ratio_raw"] = row["gradbridge_us"] / row["raw_us"]
        rows.append({"backend": name, "function": function, **row})
    return rows


def forwarder(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The least a Python-level check can cost: a function that only calls ``fn``."""
    def forward(x: Any, /) -> Any:
        return fn(x)

    return forward


def measure_floor(name: str, repeats: int, min_time: float) -> list[dict[str, Any]]:
    """``sin`` bare, behind the bare forwarder and through gradbridge, at growing sizes."""
    be = gb.get_backend(name, dtype="float32")
    native = importlib.import_module(NAMESPACE[name]).sin
    rows = []
    for n in (10, 1_000, 100_000):
        x = be.from_host(np.linspace(0.1, 0.9, n))
        sides = {"gradbridge": be.sin, "namespace": native, "forwarder": forwarder(native)}
        row = compare(sides, ((x,), {}), repeats, min_time)
        rows.append({"backend": name, "n": n, **row,
                     "ratio": row["gradbridge_us"] / row["namespace_us"],
                     "forwarder_ratio": row["forwarder_us"] / row["namespace_us"]})
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per backend: functions timed, median and worst ratio, the five worst functions."""
    summary = {}
    for name in dict.fromkeys(row["backend"] for row in rows):
        mine = sorted((row for row in rows if row["backend"] == name),
                      key=lambda row: row["ratio"], reverse=True)
        median = statistics.median(row["ratio"] for row in mine)
        summary[name] = {
            "functions": len(mine), "median_ratio": median, "worst_ratio": mine[0]["ratio"],
            "worst_five": [(row["function"], round(row["ratio"], 3)) for row in mine[:5]],
            "meets_target": median <= TARGET_MEDIAN and mine[0]["ratio"] <= TARGET_WORST,
        }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="numpy,jax,torch",
                        help="comma-separated backends (default: numpy,jax,torch)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per side")
    parser.add_argument("--min-time", type=float, default=0.05,
                        help="seconds of calls per repeat and side (default 0.05)")
    parser.add_argument("--only", default="",
                        help="comma-separated function names to time (linalg.solve, ...)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--floor", action="store_true",
                        help="only sin: bare, behind a bare Python forwarder, via gradbridge")
    args = parser.parse_args()
    only = {n.strip() for n in args.only.split(",") if n.strip()} or None
    backends = [n.strip() for n in args.backends.split(",") if n.strip()]

    info = machine.describe()
    print(f"machine: {info['cpu']}, {info['cpus']} CPUs, python {info['versions']['python']}")
    if args.floor:
        print(f"{'backend':<8}{'n':>8}{'namespace us':>13}{'forwarder us':>13}"
              f"{'gradbridge us':>14}{'forwarder':>10}{'gradbridge':>11}")
        for name in backends:
            for row in measure_floor(name, args.repeats, args.min_time):
                print(f"{name:<8}{row['n']:>8}{row['namespace_us']:>13.2f}"
                      f"{row['forwarder_us']:>13.2f}{row['gradbridge_us']:>14.2f}"
                      f"{row['forwarder_ratio']:>10.2f}{row['ratio']:>11.2f}")
        return 0
    print(f"float32 operands; median of {args.repeats} repeats of >= {args.min_time} s each; "
          "ratio = gradbridge / namespace (raw: the framework function gradbridge binds)\n")
    print(f"{'backend':<8}{'function':<26}{'gradbridge us':>14}{'namespace us':>13}"
          f"{'raw us':>8}{'ratio':>7}{'vs raw':>7}")
    rows: list[dict[str, Any]] = []
    for name in backends:
        try:
            measured = measure_backend(name, args.repeats, args.min_time, only)
        except gb.GradbridgeError as exc:
            print(f"{name:<8}skipped: {exc}")
            continue
        for row in measured:
            raw = f"{row['raw_us']:>8.2f}" if "raw_us" in row else f"{'-':>8}"
            vs_raw = f"{row['ratio_raw']:>7.2f}" if "ratio_raw" in row else f"{'-':>7}"
            print(f"{row['backend']:<8}{row['function']:<26}{row['gradbridge_us']:>14.2f}"
                  f"{row['namespace_us']:>13.2f}{raw}{row['ratio']:>7.2f}{vs_raw}")
        rows.extend(measured)
    summary = summarize(rows) if rows else {}
    print()
    for name, s in summary.items():
        verdict = "meets" if s["meets_target"] else "MISSES"
        worst = ", ".join(f"{f} {r:.2f}" for f, r in s["worst_five"])
        print(f"{name}: {s['functions']} functions, median ratio {s['median_ratio']:.2f}, "
              f"worst {s['worst_ratio']:.2f} ({verdict} median <= {TARGET_MEDIAN}, worst <= "
              f"{TARGET_WORST}); worst five: {worst}")
    if args.json:
        result = {"rows": rows, "summary": summary, "target_median": TARGET_MEDIAN,
                  "target_worst": TARGET_WORST, "repeats": args.repeats,
                  "min_time_s": args.min_time, "machine": info}
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
