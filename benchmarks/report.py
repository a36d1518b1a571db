"""Turn a results file into markdown tables (times, ratios, targets) and a log-log plot.

    python benchmarks/report.py benchmarks/results/<machine>.json   # re-render a saved run

Ratios are taken between rows of the same run only. A ratio above 1 means gradbridge is slower
than the hand-written code; the Keras ratios are Keras' time over gradbridge's (how many times
faster gradbridge is).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bandwidth import read_bound_s

PAIRS = (  # (gradbridge contestant, the hand-written code it is held against, target ratio)
    ("gradbridge-numpy", "numpy-analytic", None),
    ("gradbridge-jax", "jax-scan", 1.10),
    ("gradbridge-torch", "torch-autograd", 1.15),
)
KERAS_PAIRS = (("keras-jax", "gradbridge-jax"), ("keras-torch", "gradbridge-torch"))
MINIBATCH_TARGETS = {"gradbridge-numpy": 1.5, "gradbridge-jax": 1.10, "gradbridge-torch": 1.15}
"""Issue 14: gradbridge / hand-written on every mini-batch row, per backend."""
ITEMSIZE = {"float32": 4, "float64": 8}
MiB = 2**20
FLAT_SLACK_BYTES = 8 * MiB

Row = dict[str, Any]


def _ok(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if "error" not in r]


def index(results: dict[str, Any], workload: str = "regression") -> dict[tuple, Row]:
    """Successful rows of one workload keyed by (contestant, n, dtype)."""
    return {(r["contestant"], r["n"], r["dtype"]): r
            for r in _ok(results["rows"]) if r["workload"] == workload}


def _sizes(rows: dict[tuple, Row]) -> list[tuple[str, int]]:
    return sorted({(dtype, n) for _, n, dtype in rows}, key=lambda k: (k[0], k[1]))


def _contestants(rows: dict[tuple, Row]) -> list[str]:
    order = ["gradbridge-numpy", "gradbridge-jax", "gradbridge-torch", "gradbridge-torch-compile",
             "numpy-tutorial", "numpy-analytic", "jax-scan", "jax-scan-analytic",
             "torch-autograd", "torch-manual", "torch-compile", "keras-jax", "keras-torch"]
    present = {c for c, _, _ in rows}
    return [c for c in order if c in present] + sorted(present - set(order))


def ratio(rows: dict[tuple, Row], top: str, bottom: str, n: int, dtype: str) -> float | None:
    """per-epoch time of ``top`` over that of ``bottom`` at (n, dtype), None if either is absent."""
    a, b = rows.get((top, n, dtype)), rows.get((bottom, n, dtype))
    if a is None or b is None or b["per_epoch_s"] <= 0:
        return None
    return float(a["per_epoch_s"] / b["per_epoch_s"])


def target_ratio(results: dict[str, Any], top: str, bottom: str, n: int,
                 dtype: str) -> float | None:
    """gradbridge over hand-written at (n, dtype): the interleaved ("paired") figure if it was
    measured, else the ratio of the two separate rows."""
    pair = index(results, "paired").get((f"{top} vs {bottom}", n, dtype))
    return pair["ratio"] if pair else ratio(index(results), top, bottom, n, dtype)


def _us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:,.0f}" if us >= 100 else f"{us:.3g}"


def _x(value: float | None) -> str:
    return "–" if value is None else (f"{value:.2f}x" if value < 100 else f"{value:,.0f}x")


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


# ------------------------------------------------------------------------- targets


def targets(results: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """Each target of the performance issue: (what, met or None when unmeasured, measured)."""
    rows = index(results)
    read = results["bandwidth"]["read_GBps"]
    found: list[tuple[str, bool | None, str]] = []

    def worst(top: str, bottom: str, keep: Any = lambda n: True) -> tuple[float | None, str]:
        got = [(r, f"n={n:.0e} {d}") for d, n in _sizes(rows) if keep(n)
               if (r := target_ratio(results, top, bottom, n, d)) is not None]
        if not got:
            return None, "not measured"
        value, where = max(got)
        return value, f"worst {value:.2f}x at {where} (" + ", ".join(
            f"{w}: {r:.2f}x" for r, w in got) + ")"

    def add(what: str, value: float | None, limit: float, detail: str, above: bool = False) -> None:
        met = None if value is None else (value >= limit if above else value <= limit)
        found.append((what, met, detail))

    value, detail = worst("gradbridge-jax", "jax-scan")
    add("JAX backend <= 1.10x hand-written jit+scan at every N", value, 1.10, detail)
    jax = rows.get(("gradbridge-jax", 1_000_000, "float32"))
    if jax is None:
        add("JAX backend within 2x of the read bound at N=1e6 float32", None, 2.0, "not measured")
    else:
        bound = read_bound_s(1_000_000, 4, read)
        over = jax["per_epoch_s"] / bound
        best = float(jax.get("best_epoch_s") or jax["per_epoch_s"]) / bound
        add("JAX backend within 2x of the read bound at N=1e6 float32", over, 2.0,
            f"{over:.2f}x, fastest repeat {best:.2f}x ({_us(jax['per_epoch_s'])} µs vs "
            f"{_us(bound)} µs at {read:.1f} GB/s)")
    value, detail = worst("gradbridge-torch", "torch-autograd")
    add("torch backend <= 1.15x hand-written eager+autograd", value, 1.15, detail)
    speedups = [(r, f"n={n:.0e} {d}") for d, n in _sizes(rows) if n >= 1_000_000
                if (r := ratio(rows, "torch-autograd", "gradbridge-torch-compile", n, d))]
    least = min(speedups) if speedups else None
    add("torch backend with torch.compile >= 2x faster than native eager at N >= 1e6",
        None if least is None else least[0], 2.0,
        "not measured (full mode or --torch-compile)" if least is None else
        f"least {least[0]:.2f}x at {least[1]} (" + ", ".join(
            f"{w}: {r:.2f}x" for r, w in speedups) + ")", above=True)
    value, detail = worst("gradbridge-numpy", "numpy-analytic", lambda n: n >= 100_000)
    add("NumPy backend <= 1.5x analytic NumPy at N >= 1e5", value, 1.5, detail)
    value, detail = worst("gradbridge-numpy", "numpy-analytic", lambda n: n == 100)
    add("NumPy backend <= 3x analytic NumPy at N = 100", value, 3.0, detail)
    for keras, ours, small, large in (("keras-jax", "gradbridge-jax", 100, 50),
                                      ("keras-torch", "gradbridge-torch", 20, 20)):
        for n, limit in ((100, small), (1_000_000, large)):
            value = ratio(rows, keras, ours, n, "float32")
            add(f"{ours} >= {limit}x faster than {keras} fit at N={n:.0e}", value, limit,
                "not measured" if value is None else f"{value:,.1f}x", above=True)
    found += memory_targets(results)
    found += minibatch_targets(results)
    return found


def minibatch_rows(results: dict[str, Any]) -> list[Row]:
    """The paired mini-batch rows, by workload, batch size and N."""
    return sorted((r for r in _ok(results["rows"]) if r["workload"] == "paired-minibatch"),
                  key=lambda r: (r["of"], r["batch"], r["n"], r["contestant"]))


def minibatch_targets(results: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """Each backend's mini-batch target: its worst paired ratio over every mini-batch row."""
    found: list[tuple[str, bool | None, str]] = []
    rows = minibatch_rows(results)
    for ours, limit in MINIBATCH_TARGETS.items():
        got = [(r["ratio"], f"{r['of']} n={r['n']} batch {r['batch']}") for r in rows
               if r["contestant"].startswith(ours + " vs ")]
        what = f"{ours} <= {limit:.2f}x hand-written on every mini-batch row"
        if not got:
            found.append((what, None, "not measured"))
            continue
        worst = max(got)
        found.append((what, worst[0] <= limit, f"worst {worst[0]:.2f}x at {worst[1]} ("
                      + ", ".join(f"{w}: {v:.2f}x" for v, w in got) + ")"))
    return found


def memory_runs(results: dict[str, Any]) -> dict[str, dict[int, Row]]:
    """The long-fit memory rows: contestant -> epochs -> row."""
    runs: dict[str, dict[int, Row]] = {}
    for r in _ok(results["rows"]):
        if r["workload"] == "memory":
            runs.setdefault(r["contestant"], {})[r["epochs"]] = r
    return runs


def memory_targets(results: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """Peak memory of long fits is flat in the number of epochs; at most 2 extra data copies.

    "Flat" allows the larger of 10% of the data's size and FLAT_SLACK_BYTES between the shortest
    and the longest fit (allocator and page granularity, a longer compiled scan). Copies are
    read where the data dwarfs fixed costs: the largest N of the regression rows, peak above
    the resident size before the trainer was built, over the
    bytes of x and y as handed to it.
    """
    found: list[tuple[str, bool | None, str]] = []
    for contestant, runs in sorted(memory_runs(results).items()):
        if len(runs) < 2:
            continue
        short, long = runs[min(runs)], runs[max(runs)]
        growth = (long["peak_extra_bytes"] - short["peak_extra_bytes"]) / long["data_bytes"]
        slack = max(0.10, FLAT_SLACK_BYTES / long["data_bytes"])
        found.append((f"{contestant}: peak memory flat from {min(runs):,} to {max(runs):,} "
                      f"epochs", growth <= slack,
                      f"{short['peak_extra_bytes'] / MiB:.1f} -> "
                      f"{long['peak_extra_bytes'] / MiB:.1f} MiB above the start "
                      f"(n={long['n']:.0e}; allowed growth {slack * long['data_bytes'] / MiB:.1f}"
                      f" MiB)"))
    rows = index(results)
    for (contestant, n, dtype), r in sorted(rows.items()):
        if contestant.startswith("gradbridge") and n == max(m for _, m, _ in rows):
            found.append((f"{contestant}: <= 2 extra copies of the data", r["extra_copies"] <= 2.0,
                          f"{r['extra_copies']:.2f} copies of {r['data_bytes'] / MiB:.0f} MiB "
                          f"(n={n:.0e} {dtype})"))
    return found


# ------------------------------------------------------------------------- markdown


def markdown(results: dict[str, Any]) -> str:
    """Every table of the report, for the results file and the README."""
    info, bw = results["machine"], results["bandwidth"]
    rows = index(results)
    sizes, names = _sizes(rows), _contestants(rows)
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    out = [
        f"# Benchmarks on {info['cpu']} x {info['cpus']} CPUs"
        + (f", {', '.join(info['gpus'])}" if info["gpus"] else ", no GPU"),
        "",
        f"Mode {results['mode']}, {results['started']}, {results['duration_s']:.0f} s; "
        f"`{results['command']}`; {info['platform']}; threads per framework: "
        f"{results['settings'].get('threads', 'framework default')}; load average "
        f"{_load(results)}.",
        f"Versions: {versions}.",
        f"Memory bandwidth (NumPy, median of 7, {bw['array_bytes'] / MiB:.0f} MiB array): "
        f"read {bw['read_GBps']:.1f} GB/s (dot {bw['dot_GBps']:.1f}, sum {bw['sum_GBps']:.1f}), "
        f"copy {bw['copy_GBps']:.1f} GB/s.",
        "",
        "## Regression (tutorial: y = 3x + 2 + noise, full-batch GD, lr 0.1): µs per epoch",
        "",
        "Median of the timed calls, compilation excluded; `*` marks a run whose final w, b or "
        "losses differ from the tutorial loop in float64 beyond tolerance.",
        "",
    ]
    body = []
    for dtype, n in sizes:
        cells = [dtype, f"{n:.0e}", str(_first(rows, n, dtype, "epochs"))]
        for c in names:
            r = rows.get((c, n, dtype))
            cells.append("" if r is None else _us(r["per_epoch_s"])
                         + ("" if r.get("agrees", True) else " *"))
        body.append(cells)
    out += _table(["dtype", "N", "epochs", *names], body)

    out += ["", "## Ratios (same run): gradbridge / hand-written, and Keras / gradbridge", "",
            "Each gradbridge column gives the ratio of the separate rows above, then in brackets "
            "the median ratio of the two run in turns in one process (paired: both meet the same "
            "background load); the targets use the paired figure.", ""]
    pairs = index(results, "paired")
    header = ["dtype", "N"] + [f"{a} / {b}" for a, b, _ in PAIRS] + [
        f"{k} / {g}" for k, g in KERAS_PAIRS]
    body = [[dtype, f"{n:.0e}"]
            + [_x(ratio(rows, a, b, n, dtype)) + _paired(pairs, a, b, n, dtype)
               for a, b, _ in PAIRS]
            + [_x(ratio(rows, k, g, n, dtype)) for k, g in KERAS_PAIRS] for dtype, n in sizes]
    out += _table(header, body)

    out += ["", "## Targets", ""]
    out += _table(["target", "met", "measured"], [
        [what, {True: "met", False: "**missed**", None: "not measured"}[met], detail]
        for what, met, detail in targets(results)])

    out += ["", *bound_section(results, rows, names), "", *compile_section(rows, names),
            "", *memory_section(results, rows), "", *mlp_section(results), "",
            *minibatch_section(results), "", *model_section(results)]
    failed = [r for r in results["rows"] if "error" in r]
    if failed:
        out += ["", "## Failed jobs", ""]
        out += [f"- {r['workload']} {r['contestant']} n={r['n']} {r['dtype']}: {r['error']}"
                for r in failed]
    return "\n".join(out) + "\n"


def _load(results: dict[str, Any]) -> str:
    """The 1-minute load average at start and end: a busy machine inflates every time."""
    load = results.get("load_average")
    return "unknown" if not load else f"{load['start'][0]:.1f} -> {load['end'][0]:.1f}"


def _paired(pairs: dict[tuple, Row], top: str, bottom: str, n: int, dtype: str) -> str:
    pair = pairs.get((f"{top} vs {bottom}", n, dtype))
    return "" if pair is None else f" ({_x(pair['ratio'])})"


def _first(rows: dict[tuple, Row], n: int, dtype: str, key: str) -> Any:
    """The value of ``key`` in the non-Keras rows at (n, dtype) (Keras runs fewer epochs)."""
    values = {r[key] for (c, m, d), r in rows.items()
              if m == n and d == dtype and not c.startswith("keras")}
    return "/".join(str(v) for v in sorted(values))


def bound_section(results: dict[str, Any], rows: dict[tuple, Row], names: list[str]) -> list[str]:
    read = results["bandwidth"]["read_GBps"]
    lines = [
        "## Distance from the memory-bandwidth bound",
        "",
        "Bound = bytes that must be read per epoch / read bandwidth. One fused pass over x and "
        "y gives the loss and both gradients, and w, b are scalars, so the bytes counted are "
        f"2 · N · itemsize (nothing of size N need be written), at {read:.1f} GB/s. That "
        "bandwidth is DRAM's (a 128-256 MiB array); at N = 1e6 float32, x and y (8 MB) can stay "
        "in the L3 cache between epochs, so a fused loop can beat the bound there.",
        "",
    ]
    body = []
    for dtype, n in ((d, n) for d, n in _sizes(rows) if n >= 1_000_000):
        bound = read_bound_s(n, ITEMSIZE[dtype], read)
        for c in names:
            r = rows.get((c, n, dtype))
            if r is not None:
                best = float(r.get("best_epoch_s") or r["per_epoch_s"])
                body.append([f"{n:.0e} {dtype}", c, _us(r["per_epoch_s"]), _us(bound),
                             _x(r["per_epoch_s"] / bound), _x(best / bound)])
    return lines + _table(["N", "contestant", "µs/epoch (median)", "bound µs", "x bound",
                           "x bound, fastest repeat"], body)


def compile_section(rows: dict[tuple, Row], names: list[str]) -> list[str]:
    lines = ["## Compilation and call overhead (seconds, first call; later calls in brackets)", "",
             "`compile` is what each contestant reports (JAX lowering+compile, torch.compile's "
             "first call, Keras' first epoch over a steady one, gradbridge's History.compile_s); "
             "`call` is the wall time of a whole timed call (transfers, compile, epochs).", ""]
    body = []
    for c in names:
        for (name, n, dtype), r in sorted(rows.items(), key=lambda kv: (kv[0][2], kv[0][1])):
            if name == c and (r["compile_s"] > 0 or (r["compile_s_later"] or 0) > 0):
                body.append([c, f"{n:.0e} {dtype}", f"{r['compile_s']:.3f}",
                             f"{r['compile_s_later'] or 0:.3f}",
                             f"{sorted(r['wall_s'])[len(r['wall_s']) // 2]:.3f}"])
    return lines + _table(["contestant", "N", "compile (first)", "compile (later)", "call"], body)


def memory_section(results: dict[str, Any], rows: dict[tuple, Row]) -> list[str]:
    lines = ["## Peak memory", "",
             "Resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs after a "
             "tiny priming run and the data's creation, in a fresh process per row) minus the "
             "resident size at that point; `copies` divides it by the bytes of x and y. Using "
             "RSS rather than tracemalloc counts every allocator (XLA, torch) alike.", ""]
    largest = max((n for _, n, _ in rows), default=0)
    body = [[c, f"{n:.0e} {d}", f"{r['peak_extra_bytes'] / MiB:,.1f}", f"{r['extra_copies']:.2f}"]
            for (c, n, d), r in sorted(rows.items()) if n == largest]
    for contestant, runs in sorted(memory_runs(results).items()):
        for r in (runs[e] for e in sorted(runs)):
            body.append([f"{contestant} ({r['epochs']:,} epochs)", f"{r['n']:.0e} {r['dtype']}",
                         f"{r['peak_extra_bytes'] / MiB:,.1f}", f"{r['extra_copies']:.2f}"])
    return lines + _table(["contestant", "N", "peak extra MiB", "copies"], body)


def mlp_section(results: dict[str, Any]) -> list[str]:
    rows = index(results, "mlp")
    if not rows:
        return []
    some = next(iter(rows.values()))
    reference = rows.get(("numpy-analytic", some["n"], some["dtype"]))
    s = results["settings"]
    lines = [f"## MLP ({'-'.join(map(str, s['mlp_sizes']))}, tanh, batch {s['mlp_batch']}, "
             f"Adam lr {s['mlp_lr']}, N={some['n']}, {some['dtype']}, {some['epochs']} epochs)",
             "", "Every contestant starts from the same weights and walks the same batch order, "
             "so the final full-data MSE should agree to rounding.", ""]
    body = []
    for (c, _, _), r in sorted(rows.items()):
        vs = None if reference is None else r["per_epoch_s"] / reference["per_epoch_s"]
        body.append([c, f"{r['per_epoch_s'] * 1e3:,.1f}", _x(vs), f"{r['final_loss']:.6f}",
                     f"{r['compile_s']:.2f}"])
    return lines + _table(["contestant", "ms/epoch", "vs numpy-analytic", "final MSE",
                           "compile s"], body)


def minibatch_section(results: dict[str, Any]) -> list[str]:
    rows = minibatch_rows(results)
    if not rows:
        return []
    s = results["settings"]
    softmax = s.get("softmax", {})
    lines = ["## Mini-batch training (paired, same process): ms per epoch and ratio", "",
             f"Softmax regression ({softmax.get('features')} features, "
             f"{softmax.get('classes')} classes, Adam lr {softmax.get('lr')}) and the MLP "
             f"({'-'.join(map(str, s['mlp_sizes']))}, tanh, Adam lr {s['mlp_lr']}); each "
             "backend's fit against the hand-written code it is held to, called in turns; "
             "compilation excluded on both sides. `loss diff`: the largest relative difference "
             "of the two runs' per-epoch losses (same start, same batches).", ""]
    body = [[r["of"], f"{r['n']:,}", str(r["batch"]), str(r["epochs"]), r["contestant"],
             f"{r['per_epoch_s'] * 1e3:,.3f}", f"{r['theirs_per_epoch_s'] * 1e3:,.3f}",
             _x(r["ratio"]), f"{r.get('max_loss_rel_diff', float('nan')):.1e}"] for r in rows]
    return lines + _table(["workload", "N", "batch", "epochs", "pair", "ours ms", "theirs ms",
                           "ratio", "loss diff"], body)


def model_section(results: dict[str, Any]) -> list[str]:
    """The paired log-det MLP rows: a model built from the newer functions (log_softmax,
    slogdet, matmul, mT) against the same model hand-written; no target is set for them."""
    rows = sorted((r for r in _ok(results["rows"]) if r["workload"] == "paired-model"),
                  key=lambda r: (r["of"], r["n"], r["contestant"]))
    if not rows:
        return []
    model = results["settings"].get("logdet_mlp", {})
    lines = ["## Log-det MLP (paired, same process): ms per step and ratio", "",
             f"{'-'.join(map(str, model.get('sizes', [])))} tanh MLP, softmax cross-entropy "
             f"minus {model.get('lam')} * logdet(W0^T W0 + I), full-batch gradient descent "
             f"(lr {model.get('lr')}), one step per epoch; gradbridge's loss written once "
             "against `be` (`be.value_and_grad`, the step under `be.jit`), hand-written: NumPy "
             "analytic gradients, JAX jitted step, torch eager autograd. Compilation excluded "
             "on both sides. No target: the row reports.", ""]
    body = [[r["of"], f"{r['n']:,}", r["dtype"], str(r["epochs"]), r["contestant"],
             f"{r['per_epoch_s'] * 1e3:,.3f}", f"{r['theirs_per_epoch_s'] * 1e3:,.3f}",
             _x(r["ratio"]), f"{r.get('max_loss_rel_diff', float('nan')):.1e}"] for r in rows]
    return lines + _table(["model", "N", "dtype", "steps", "pair", "ours ms", "theirs ms",
                           "ratio", "loss diff"], body)


# ------------------------------------------------------------------------- plot


COLOURS = {"numpy": "tab:blue", "jax": "tab:orange", "torch": "tab:green",
           "keras-jax": "tab:purple", "keras-torch": "tab:red"}


def _colour(contestant: str) -> str:
    """One colour per framework underneath, gradbridge and hand-written alike; Keras apart."""
    if contestant in COLOURS:
        return COLOURS[contestant]
    return COLOURS.get(contestant.removeprefix("gradbridge-").split("-")[0], "tab:gray")


def plot(results: dict[str, Any], path: Path) -> None:
    """Time per epoch against N on log-log axes, one panel per dtype, with the read bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = index(results)
    dtypes = sorted({d for _, _, d in rows})
    read = results["bandwidth"]["read_GBps"]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(7.5 * len(dtypes), 5.5), squeeze=False)
    for ax, dtype in zip(axes[0], dtypes, strict=True):
        markers = itertools.cycle("sv^D<>p")
        for c in _contestants(rows):
            points = sorted((n, r["per_epoch_s"] * 1e6) for (name, n, d), r in rows.items()
                            if name == c and d == dtype)
            if points:
                ours = c.startswith("gradbridge")
                ax.plot(*zip(*points, strict=True), marker="o" if ours else next(markers),
                        color=_colour(c),
                        linestyle=("-." if "compile" in c else "-") if ours else "--",
                        linewidth=2.2 if ours else 1.1, label=c)
        ns = sorted({n for _, n, d in rows if d == dtype})
        if ns:
            grid = [ns[0], ns[-1]]
            ax.plot(grid, [read_bound_s(n, ITEMSIZE[dtype], read) * 1e6 for n in grid],
                    color="black", linestyle=":", label=f"read bound ({read:.0f} GB/s)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (samples)")
        ax.set_ylabel("time per epoch (µs)")
        ax.set_title(f"Tutorial regression, {dtype}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")  # below the bound line: always empty
    info = results["machine"]
    fig.suptitle(f"{info['cpu']} x {info['cpus']} CPUs"
                 + (f", {info['gpus'][0]}" if info["gpus"] else "") + f" ({results['mode']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def minibatch_plot(results: dict[str, Any], path: Path) -> bool:
    """Softmax regression's time per epoch against the batch size (at the sweep's N) and
    against N (at batch 128), gradbridge solid and hand-written dashed; False without rows."""
    rows = [r for r in minibatch_rows(results) if r["of"] == "softmax"]
    by_n: dict[int, int] = {}
    for r in rows:
        by_n[r["n"]] = by_n.get(r["n"], 0) + 1
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep_n = max(by_n, key=lambda n: (by_n[n], n))  # the N most batch sizes were run at
    batches = [r["batch"] for r in rows]
    fixed_batch = max(set(batches), key=batches.count)
    panels = [("batch", [r for r in rows if r["n"] == sweep_n], f"softmax, N = {sweep_n:,}"),
              ("n", [r for r in rows if r["batch"] == fixed_batch],
               f"softmax, batch {fixed_batch}")]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, (key, chosen, title) in zip(axes, panels, strict=True):
        for pair in sorted({r["contestant"] for r in chosen}):
            ours, theirs = pair.split(" vs ")
            points = sorted((r[key], r["per_epoch_s"], r["theirs_per_epoch_s"])
                            for r in chosen if r["contestant"] == pair)
            xs = [p[0] for p in points]
            ax.plot(xs, [p[1] * 1e3 for p in points], marker="o", linewidth=2.2,
                    color=_colour(ours), label=ours)
            ax.plot(xs, [p[2] * 1e3 for p in points], marker="s", linestyle="--",
                    linewidth=1.1, color=_colour(ours), label=theirs)
        ax.set_xscale("log", base=2 if key == "batch" else 10)
        ax.set_yscale("log")
        ax.set_xlabel("batch size" if key == "batch" else "N (samples)")
        ax.set_ylabel("time per epoch (ms)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    info = results["machine"]
    fig.suptitle(f"Mini-batch training, {info['cpu']} x {info['cpus']} CPUs ({results['mode']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write(results: dict[str, Any], stem: Path) -> dict[str, str]:
    """Write ``<stem>.md``, ``<stem>.png`` and ``<stem>-minibatch.png`` (plots only of rows
    that have a time); their paths."""
    md, png = stem.with_suffix(".md"), stem.with_suffix(".png")
    md.write_text(markdown(results))
    written = {"markdown": str(md)}
    minibatch_png = stem.with_name(stem.name + "-minibatch.png")
    if minibatch_plot(results, minibatch_png):
        written["minibatch_plot"] = str(minibatch_png)
    if not index(results):
        return {**written, "plot": "no plot (no regression row has a time)"}
    plot(results, png)
    return {**written, "plot": str(png)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Re-render a benchmark results file.")
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    written = write(json.loads(args.results.read_text()), args.results.with_suffix(""))
    print(written)


if __name__ == "__main__":
    main()
