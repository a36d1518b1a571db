"""The files a comparison leaves: results.json, results.csv, timing.csv and report.md.

Every file is written atomically (a temp file beside it, then ``os.replace``), so a reader,
or a comparison killed mid-write, only ever sees a complete old or new version.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradbridge.core.backend import InvalidArgument

TEMP_SUFFIX = ".partial"


# --------------------------------------------------------------------- atomic files


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` in one step: never a half-written file.

    The file follows the user's umask; a path that cannot be written is an InvalidArgument.
    """
    payload = data.encode() if isinstance(data, str) else data
    make_directory(path.parent)
    try:
        _write_then_rename(path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"),
                           path, payload)
    except OSError as exc:
        raise unwritable(path, exc) from exc


def _write_then_rename(temp: Path, path: Path, payload: bytes) -> None:
    """Write a new file ``temp`` (mode 0666 less the umask), flush it to disk, rename it."""
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def make_directory(directory: Path) -> None:
    """Create ``directory`` and its parents; failing to is an InvalidArgument naming it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(directory, exc) from exc


def unwritable(path: Path, exc: OSError) -> InvalidArgument:
    """The error for results that cannot be written to ``path``: why, and what to change."""
    if isinstance(exc, FileExistsError | NotADirectoryError):
        why = "a file stands where a directory is needed"
    else:
        why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    return InvalidArgument(f"cannot write results to {path}: {why}; choose another --out")


def write_json(path: Path, document: Any) -> None:
    """Strict JSON (non-finite numbers become null), written atomically."""
    atomic_write(path, json.dumps(_finite(document), indent=1, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    """Parse a JSON file (OSError if unreadable, ValueError if not JSON)."""
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# ------------------------------------------------------------------- results files

CSV_COLUMNS = ("experiment", "backend", "device", "dtype", "status", "verdict",
               "max_rel_diff", "max_abs_diff", "first_epoch_beyond_tolerance", "tolerance",
               "epochs", "final_loss", "final_params", "per_epoch_s", "per_epoch_s_min",
               "per_epoch_s_q1", "per_epoch_s_q3", "per_epoch_s_max", "noisy", "compile_s",
               "wall_s", "host_peak_rss_mb", "host_rss_increase_mb", "device_peak_mb", "reason")
TIMING_COLUMNS = ("backend", "device", "dtype", "n", "epochs", "repeats", "per_epoch_s_median",
                  "per_epoch_s_min", "per_epoch_s_q1", "per_epoch_s_q3", "per_epoch_s_max",
                  "noisy", "per_epoch_s_repeats", "compile_s")


def write_results(results: Mapping[str, Any], directory: Path) -> None:
    """results.json (everything), results.csv (a row per run), timing.csv (a row per N)."""
    write_json(directory / "results.json", results)
    atomic_write(directory / "results.csv", _csv(CSV_COLUMNS, map(_csv_row, results["runs"])))
    atomic_write(directory / "timing.csv", _csv(TIMING_COLUMNS, _timing_rows(results["runs"])))


def _csv(columns: tuple[str, ...], rows: Any) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _csv_row(run: Mapping[str, Any]) -> dict[str, Any]:
    verdict = run.get("verdict") or {}
    timing = run.get("timing") or {}
    memory = run.get("memory") or {}
    losses = run.get("losses") or []
    return {
        "experiment": run["experiment"], "backend": run["backend"], "device": run["device"],
        "dtype": run["dtype"], "status": run["status"], "verdict": verdict.get("text", ""),
        "max_rel_diff": verdict.get("worst_rel", ""), "max_abs_diff": verdict.get("worst_abs", ""),
        "first_epoch_beyond_tolerance": verdict.get("first_epoch", ""),
        "tolerance": verdict.get("tolerance", ""), "epochs": len(losses) if losses else "",
        "final_loss": losses[-1] if losses else "",
        "final_params": json.dumps(run["params"]) if run.get("params") else "",
        "per_epoch_s": timing.get("per_epoch_s", ""),
        **_spread_columns(timing.get("per_epoch_s_quantiles")),
        "compile_s": timing.get("compile_s", ""), "wall_s": run.get("wall_s", ""),
        "host_peak_rss_mb": memory.get("host_peak_rss_mb", ""),
        "host_rss_increase_mb": memory.get("host_rss_increase_mb", ""),
        "device_peak_mb": memory.get("device_peak_mb", ""), "reason": run.get("reason", ""),
    }


def _timing_rows(runs: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        if run["experiment"] != "timing" or run["status"] != "ok":
            continue
        extra = run["extra"]
        for i, n in enumerate(extra["sizes"]):
            rows.append({"backend": run["backend"], "device": run["device"],
                         "dtype": run["dtype"], "n": n, "epochs": extra["epochs"],
                         "repeats": extra["repeats"],
                         "per_epoch_s_median": extra["per_epoch_s"][i],
                         **_spread_columns(extra["per_epoch_s_quantiles"][i]),
                         "per_epoch_s_repeats": json.dumps(extra["per_epoch_s_repeats"][i]),
                         "compile_s": extra["compile_s"][i]})
    return rows


SPREAD_COLUMNS = ("per_epoch_s_min", "per_epoch_s_q1", "per_epoch_s_q3", "per_epoch_s_max")


def _spread_columns(quantiles: Sequence[float] | None) -> dict[str, Any]:
    """A timing's quantiles beside its median and whether they are noisy; blank without them."""
    if quantiles is None:
        return dict.fromkeys((*SPREAD_COLUMNS, "noisy"), "")
    low, q1, _, q3, high = quantiles
    return {**dict(zip(SPREAD_COLUMNS, (low, q1, q3, high), strict=True)),
            "noisy": noisy(quantiles)}


# ------------------------------------------------------------------ verdicts


def failures(results: Mapping[str, Any]) -> list[str]:
    """One line per reason ``--check`` fails: a run beyond tolerance or in error, a skipped run
    of a backend that was named, a grid where nothing ran."""
    named = results["grid"].get("backends_named", False)
    lines = []
    for run in results["runs"]:
        if run["status"] == "error":
            lines.append(f"{_where(run)}: error: {run['reason']}")
        elif run["status"] == "skipped" and named:
            lines.append(f"{_where(run)}: skipped although {run['backend']} was named: "
                         f"{run['reason']}")
        elif run["status"] == "ok" and run.get("verdict") and not run["verdict"]["agrees"]:
            lines.append(f"{_where(run)}: {run['verdict']['text']}")
    return lines + _nothing_ran(results)


def errors(results: Mapping[str, Any]) -> list[str]:
    """Runs that ended in an error, and a grid where nothing ran: failures even without --check."""
    return [f"{_where(run)}: error: {run['reason']}" for run in results["runs"]
            if run["status"] == "error"] + _nothing_ran(results)


def _nothing_ran(results: Mapping[str, Any]) -> list[str]:
    runs = results["runs"]
    if any(run["status"] == "ok" for run in runs):
        return []
    skipped = sum(run["status"] == "skipped" for run in runs)
    return [f"nothing ran: none of the grid's {_missing_cells(results) + len(runs)} runs "
            f"finished ({skipped} skipped, {len(runs) - skipped} in error)"]


def _where(run: Mapping[str, Any]) -> str:
    return f"{run['experiment']} on {run['backend']} {run['device']} {run['dtype']}"


def backend_verdicts(results: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(backend, runs summary, verdict) per backend: agrees, or its worst difference and where."""
    rows = []
    for backend in results["grid"]["backends"]:
        runs = [r for r in results["runs"] if r["backend"] == backend]
        counts = {s: sum(r["status"] == s for r in runs) for s in ("ok", "skipped", "error")}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "not run yet"
        compared = [r for r in runs if r["status"] == "ok" and r.get("verdict")]
        differing = [r for r in compared if not r["verdict"]["agrees"]]
        errors = [r for r in runs if r["status"] == "error"]
        if differing:
            worst = max(differing, key=lambda r: _number(r["verdict"]["worst_rel"]))
            text = (f"{worst['verdict']['text']} ({worst['experiment']}, {worst['device']}, "
                    f"{worst['dtype']})")
        elif errors:
            text = f"failed: {errors[0]['experiment']}: {errors[0]['reason']}"
        elif compared:
            worst_by_dtype: dict[str, float] = {}
            for r in compared:
                worst_by_dtype[r["dtype"]] = max(worst_by_dtype.get(r["dtype"], 0.0),
                                                 _number(r["verdict"]["worst_rel"]))
            text = "agrees (largest relative difference " + ", ".join(
                f"{v:.1e} in {d}" for d, v in sorted(worst_by_dtype.items())) + ")"
        elif runs and all(r["status"] == "skipped" for r in runs):
            text = f"skipped: {runs[0]['reason']}"
        else:
            text = "nothing compared"
        rows.append((backend, summary, text))
    return rows


def summary_rows(results: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The terminal summary: one row per run."""
    header = ["experiment", "backend", "device", "dtype", "verdict", "max rel diff", "time"]
    rows = []
    for run in results["runs"]:
        verdict = run.get("verdict") or {}
        rows.append([run["experiment"], run["backend"], run["device"], run["dtype"],
                     _status_text(run, width=60), _sci(verdict.get("worst_rel")),
                     _time_text(run)])
    return header, rows


def _status_text(run: Mapping[str, Any], width: int = 200) -> str:
    if run["status"] != "ok":
        reason = str(run.get("reason", "")).splitlines()[0] if run.get("reason") else ""
        reason = reason if len(reason) <= width else reason[:width - 1] + "…"
        return f"{run['status']}: {reason}"
    verdict = run.get("verdict")
    return verdict["text"] if verdict else "measured"


def _number(value: Any) -> float:
    return math.inf if value is None else float(value)


def _sci(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return f"{float(value):.1e}"


def format_seconds(seconds: float | None) -> str:
    """A duration in the unit that reads best: ns, µs, ms or s."""
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


NOISY_SPREAD = 0.25
"""How far, as a fraction of their median, a timing's repeats may spread before it is noisy."""

CONTENDED = "contended"
CONTENDED_NOTE = (
    f"**Contended**: the repeats of a timing marked so spread by more than {NOISY_SPREAD:.0%} "
    "of their median (interquartile range), or the fastest beat the median by more than that: "
    "the machine was busy with other work (processes competing for its CPUs or GPU) while "
    "they ran, so they tell about that moment more than about the backend. Rerun them on an "
    "idle machine before comparing them.")


def spread(quantiles: Sequence[float]) -> float:
    """The interquartile range of a timing's repeats over their median; ``quantiles`` are
    [min, q1, median, q3, max]."""
    _, q1, median, q3, _ = quantiles
    return (q3 - q1) / median if median > 0 else 0.0


def noisy(quantiles: Sequence[float]) -> bool:
    """Whether the repeats say the machine was contended: they spread widely, or most of them
    ran well slower than the fastest (contention only ever slows a run down)."""
    fastest, _, median, _, _ = quantiles
    return spread(quantiles) > NOISY_SPREAD or fastest < (1 - NOISY_SPREAD) * median


def _timed_text(seconds: float, quantiles: Sequence[float] | None, unit: str = "") -> str:
    """'11 µs/epoch (IQR 9%)', saying 'contended' when the repeats are noisy."""
    text = f"{format_seconds(seconds)}{unit}"
    if quantiles is None:  # a single measurement
        return text
    mark = f", {CONTENDED}" if noisy(quantiles) else ""
    return f"{text} (IQR {spread(quantiles):.0%}{mark})"


def noisy_sizes(extra: Mapping[str, Any]) -> list[int]:
    """The data sizes N of a timing sweep whose repeats were noisy."""
    return [n for n, quantiles in zip(extra["sizes"], extra["per_epoch_s_quantiles"], strict=True)
            if noisy(quantiles)]


def _is_noisy(run: Mapping[str, Any]) -> bool:
    if run["experiment"] == "timing":
        return bool(noisy_sizes(run["extra"]))
    quantiles = (run.get("timing") or {}).get("per_epoch_s_quantiles")
    return quantiles is not None and noisy(quantiles)


def _time_text(run: Mapping[str, Any]) -> str:
    """A run's time for the tables: per epoch with its spread, or the wall time."""
    if run["status"] != "ok":
        return "-"
    timing = run.get("timing") or {}
    if timing.get("per_epoch_s") is not None:
        return _timed_text(timing["per_epoch_s"], timing.get("per_epoch_s_quantiles"), "/epoch")
    wall = format_seconds(run.get("wall_s"))
    if run["experiment"] == "timing":
        sizes, every = noisy_sizes(run["extra"]), run["extra"]["sizes"]
        where = (f"N = {', '.join(f'{n:,}' for n in sizes)}" if len(sizes) <= 2
                 else f"{len(sizes)} of {len(every)} sizes")
        return f"{wall} sweep" + (f" ({CONTENDED} at {where})" if sizes else "")
    return wall


# ---------------------------------------------------------------------- report.md


def finish(results: Mapping[str, Any], directory: Path) -> list[Path]:
    """Write the plots (when matplotlib is installed) and report.md; return what was written."""
    try:
        from gradbridge.experiments import plots
    except ImportError:  # pragma: no cover - matplotlib is the 'plot' extra
        written: list[Path] = []
        note = "No plots: matplotlib is not installed (pip install 'gradbridge[plot]')."
    else:
        written = plots.make_plots(results, directory)
        note = ""
    manifest = read_json(directory / "manifest.json")
    atomic_write(directory / "report.md", render(results, manifest, written, note))
    return [*written, directory / "report.md"]


def render(results: Mapping[str, Any], manifest: Mapping[str, Any], plots: list[Path],
           plot_note: str = "") -> str:
    """report.md: the machine, the method, a verdict per backend, the runs, timing, plots."""
    tol = results["tolerance"]
    lines = ["# gradbridge compare: do the frameworks agree, and which is fastest here?", "",
             _machine_line(manifest), ""]
    lines += [
        "Every run is compared with a reference written in plain float64 NumPy, independent "
        "of gradbridge's backends: the tutorial's own gradient-descent loop, Bayes' theorem in "
        "closed form, and backpropagation written out by hand (itself checked against central "
        "finite differences). For each quantity (loss, w, b, a gradient vector, ...) the "
        "relative difference is max|x - ref| / max|ref|; at each epoch the worst quantity "
        f"counts. A run **agrees** when that stays within {tol['float64']:.0e} in float64 "
        f"and {tol['float32']:.0e} in float32 at every epoch; otherwise its verdict says by "
        "how much it differs and from which epoch (counted from 0, like the tutorial's "
        "print).", "",
        f"Why these tolerances: float64 results differ by rounding only (about 1e-16 per "
        f"operation), so {tol['float64']:.0e} leaves room for other summation orders and "
        "nothing else. float32 rounds the data and parameters to about 6e-8; the regression's "
        "residuals (small differences of numbers near 5) amplify that about tenfold and sums "
        "over N points add rounding of their own, while gradient descent damps rather than "
        f"compounds it across epochs. {tol['float32']:.0e} bounds that with a wide "
        f"margin{_float32_note(results)}, yet an operation off by one part in a thousand "
        "fails by a factor of ten.", "",
        "## Verdict per backend", "",
        "| backend | runs | verdict |", "|---|---|---|",
    ]
    lines += [f"| {b} | {s} | {_cell(t)} |" for b, s, t in backend_verdicts(results)]
    lines += ["", "## Every run", "",
              "| experiment | backend | device | dtype | verdict | max rel diff | max abs diff | "
              "time | compile | peak RSS (MB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        verdict = run.get("verdict") or {}
        memory = run.get("memory") or {}
        compile_s = (run.get("timing") or {}).get("compile_s")
        rss = memory.get("host_peak_rss_mb")
        lines.append(
            f"| {run['experiment']} | {run['backend']} | {run['device']} | {run['dtype']} | "
            f"{_cell(_status_text(run))} | {_sci(verdict.get('worst_rel'))} | "
            f"{_sci(verdict.get('worst_abs'))} | {_time_text(run)} | "
            f"{format_seconds(compile_s or None)} | {'-' if rss is None else f'{rss:.0f}'} |")
    lines += ["", "Time: per epoch for the regression, the median of its timed fits (after a "
              "first one, which pays compilation and one-off costs) with their interquartile "
              "range (IQR) as a share of it; wall time of the whole experiment otherwise. "
              "Compile: the first fit's time spent tracing and compiling, apart from its "
              "epochs; '-' when nothing was compiled (an earlier run had compiled the same "
              "program, or the backend runs eagerly). Peak RSS is the process's resident "
              "memory at its highest during the run (device memory is in results.json for "
              "CUDA runs)."]
    if any(run["status"] == "ok" and _is_noisy(run) for run in results["runs"]):
        lines += ["", CONTENDED_NOTE]
    lines += _finite_difference_section(results)
    lines += _timing_section(results)
    lines += _not_run_section(results)
    lines += ["", "## Plots", ""]
    if plot_note:
        lines.append(plot_note)
    lines += [f"![{PLOT_TITLES.get(p.stem, p.stem)}]({p.name})" for p in plots]
    lines += ["", "## Files", "",
              "- `results.json`: every run with per-epoch losses, parameters and differences",
              "- `results.csv`: one row per run; `timing.csv`: one row per backend and N",
              "- `manifest.json`: versions, machine, precision flags, seeds, command line",
              "- `runs/`: one file per finished run (what `--resume` keeps)", ""]
    return "\n".join(lines)


PLOT_TITLES = {
    "loss_curves": "Loss per epoch on every backend",
    "gd_path": "Gradient-descent path of (w, b) over the MSE contour",
    "reference_difference": "Relative difference from the float64 NumPy reference",
    "posterior_prevalence": "Posterior probability against prevalence",
    "timing": "Time per epoch against N",
}


def _machine_line(manifest: Mapping[str, Any]) -> str:
    env = manifest.get("environment", {})
    cpu = env.get("cpu", {})
    gpus = env.get("gpus") or []
    packages = env.get("packages", {})
    versions = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
    machine = f"{cpu.get('model', 'unknown CPU')} ({cpu.get('count', '?')} CPUs), "
    machine += f"GPU: {', '.join(gpus)}" if gpus else "no GPU"
    commit = env.get("git_commit")
    return (f"Run on {machine}; {versions}. Started {manifest.get('started', '?')}"
            + (f", git commit `{commit}`" if commit else "") + ". Command: `"
            + " ".join(manifest.get("command", [])) + "`.")


def _float32_note(results: Mapping[str, Any]) -> str:
    worst = [_number(r["verdict"]["worst_rel"]) for r in results["runs"]
             if r["status"] == "ok" and r["dtype"] == "float32" and r.get("verdict")]
    return f" (the largest float32 difference in this run is {max(worst):.1e})" if worst else ""


def _finite_difference_section(results: Mapping[str, Any]) -> list[str]:
    runs = [r for r in results["runs"] if r["status"] == "ok" and r.get("also_compared")]
    if not runs:
        return []
    lines = ["", "## MLP gradient against central finite differences", "",
             "A second, cruder reference: float64 central differences of the hand-written loss. "
             "They carry their own error (truncation plus rounding, about 1e-9 relative), so "
             "this table is a sanity check beside the verdicts above, not a verdict.", "",
             "| backend | device | dtype | max rel diff | max abs diff |", "|---|---|---|---|---|"]
    for run in runs:
        for comparison in run["also_compared"].values():
            lines.append(f"| {run['backend']} | {run['device']} | {run['dtype']} | "
                         f"{_sci(comparison['max_rel'])} | {_sci(comparison['max_abs'])} |")
    return lines


def _timing_section(results: Mapping[str, Any]) -> list[str]:
    runs = [r for r in results["runs"] if r["experiment"] == "timing" and r["status"] == "ok"]
    if not runs:
        return []
    sizes = runs[0]["extra"]["sizes"]
    extra = runs[0]["extra"]
    lines = ["", "## Time per epoch of the regression against N", "",
             f"Median over {_plural(extra['repeats'], 'repeat')} of "
             f"{_plural(extra['epochs'], 'epoch')}, after a first fit at each N that pays "
             "compilation and one-off costs, with the repeats' interquartile range (IQR) as a "
             "share of the median; the device is synchronized before clocks are read. Tracing "
             "and compiling are timed apart: the last column is the sweep's first compile and "
             "its N, '-' when nothing compiled (an earlier run had compiled the same programs, "
             "or the backend runs eagerly).", "",
             "| backend | device | dtype | " + " | ".join(f"N = {n:,}" for n in sizes)
             + " | compile |", "|---|---|---|" + "---|" * (len(sizes) + 1)]
    for run in runs:
        lines.append(f"| {run['backend']} | {run['device']} | {run['dtype']} | "
                     f"{' | '.join(_timing_cells(run['extra']))} | "
                     f"{_first_compile(run['extra'])} |")
    if any(noisy_sizes(run["extra"]) for run in runs):
        lines += ["", "In bold: contended, too noisy to trust (see the note under the runs table)."]
    return lines


def _timing_cells(extra: Mapping[str, Any]) -> list[str]:
    """One cell per N: the median and its spread, in bold when noisy."""
    return [f"**{_timed_text(median, q)}**" if noisy(q) else _timed_text(median, q)
            for median, q in zip(extra["per_epoch_s"], extra["per_epoch_s_quantiles"], strict=True)]


def _first_compile(extra: Mapping[str, Any]) -> str:
    """The sweep's first compile time and the N it was at; '-' when nothing compiled."""
    for n, seconds in zip(extra["sizes"], extra["compile_s"], strict=True):
        if seconds:
            return f"{format_seconds(seconds)} (N = {n:,})"
    return "-"


def _not_run_section(results: Mapping[str, Any]) -> list[str]:
    runs = [r for r in results["runs"] if r["status"] != "ok"]
    missing = _missing_cells(results)
    if not runs and not missing:
        return []
    lines = ["", "## Skipped and failed runs", ""]
    lines += [f"- {r['experiment']} on {r['backend']} {r['device']} {r['dtype']}: "
              f"**{r['status']}**: {_cell(str(r.get('reason', '')))}" for r in runs]
    if missing:
        lines.append(f"- {missing} run(s) of the grid have not run yet (finish them with "
                     "`--resume`)")
    return lines


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _missing_cells(results: Mapping[str, Any]) -> int:
    grid = results["grid"]
    total = (len(grid["experiments"]) * len(grid["backends"]) * len(grid["devices"])
             * len(grid["dtypes"]))
    return total - len(results["runs"])


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")
