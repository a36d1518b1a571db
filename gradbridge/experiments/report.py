"""What a comparison reports: results.json, results.csv, report.md and the verdicts.

Everything here reads :class:`~gradbridge.experiments.record.Results` and treats every
experiment alike; an experiment that wants more (a table, a file) brings it as metadata.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradbridge.experiments import noise, store
from gradbridge.experiments.record import Results, RunRecord

# ------------------------------------------------------------------- results files

CSV_COLUMNS = ("experiment", "backend", "device", "dtype", "status", "verdict", "output",
               "max_rel_diff", "max_abs_diff", "first_step_beyond_tolerance", "tolerance",
               "final_outputs", "run_s", "run_s_min", "run_s_q1", "run_s_q3", "run_s_max",
               "noisy", "compile_s", "first_s", "host_peak_rss_mb", "host_rss_increase_mb",
               "device_peak_mb", "reason")
SPREAD_COLUMNS = ("run_s_min", "run_s_q1", "run_s_q3", "run_s_max")
FINAL_SIZE = 8  # outputs with at most this many final values go into final_outputs


def write_results(results: Results, directory: Path) -> list[Path]:
    """results.json (everything), results.csv (a row per run) and the experiments' own files."""
    store.write_json(directory / "results.json", results.as_dict())
    rows = [_csv_row(run, results.experiments[run.experiment].series) for run in results.runs]
    store.atomic_write(directory / "results.csv", csv_text(CSV_COLUMNS, rows))
    written = [directory / "results.json", directory / "results.csv"]
    for name, experiment in results.experiments.items():
        if experiment.files is not None:
            written += experiment.files(results, name, directory)
    return written


def csv_text(columns: Sequence[str], rows: Any) -> str:
    """CSV with a header row, as one string."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _csv_row(run: RunRecord, series: Sequence[str]) -> dict[str, Any]:
    verdict = run.verdict or {}
    time = run.time or {}
    memory = run.memory or {}
    return {
        "experiment": run.experiment, "backend": run.backend, "device": run.device,
        "dtype": run.dtype, "status": run.status, "verdict": verdict.get("text", ""),
        "output": verdict.get("output") or "",
        "max_rel_diff": verdict.get("worst_rel", ""), "max_abs_diff": verdict.get("worst_abs", ""),
        "first_step_beyond_tolerance": _blank(verdict.get("first_step")),
        "tolerance": verdict.get("tolerance", ""),
        "final_outputs": json.dumps(final_outputs(run, series)) if run.outputs else "",
        "run_s": _blank(time.get("run_s")), **spread_columns(time.get("run_s_quantiles")),
        "compile_s": _blank(time.get("compile_s")), "first_s": _blank(time.get("first_s")),
        "host_peak_rss_mb": _blank(memory.get("host_peak_rss_mb")),
        "host_rss_increase_mb": _blank(memory.get("host_rss_increase_mb")),
        "device_peak_mb": _blank(memory.get("device_peak_mb")), "reason": run.reason,
    }


def final_outputs(run: RunRecord, series: Sequence[str]) -> dict[str, Any]:
    """Each small output's value, a series at its last step: what a reader looks at first."""
    finals = {}
    for name in run.outputs:
        array = run.output(name)
        last = array[-1] if name in series and array.ndim and len(array) else array
        if last.size <= FINAL_SIZE:
            finals[name] = last.tolist()
    return finals


def _blank(value: Any) -> Any:
    return "" if value is None else value


def spread_columns(quantiles: Sequence[float] | None) -> dict[str, Any]:
    """A timing's quantiles beside its median and whether they are noisy; blank without them."""
    if quantiles is None:
        return dict.fromkeys((*SPREAD_COLUMNS, "noisy"), "")
    low, q1, _, q3, high = quantiles
    return {**dict(zip(SPREAD_COLUMNS, (low, q1, q3, high), strict=True)),
            "noisy": noise.noisy(quantiles)}


# ------------------------------------------------------------------ verdicts


def failures(results: Results) -> list[str]:
    """One line per reason ``--check`` fails: a run beyond tolerance or in error, a skipped run
    of a backend that was named, a grid where nothing ran."""
    lines = []
    for run in results.runs:
        if run.status == "error":
            lines.append(f"{run.where}: error: {run.reason}")
        elif run.status == "skipped" and results.backends_named:
            lines.append(f"{run.where}: skipped although {run.backend} was named: {run.reason}")
        elif run.status == "ok" and run.agrees is False:
            assert run.verdict is not None
            lines.append(f"{run.where}: {run.verdict['text']}")
    return lines + _nothing_ran(results)


def errors(results: Results) -> list[str]:
    """Runs that ended in an error, and a grid where nothing ran: failures even without --check."""
    return [f"{run.where}: error: {run.reason}" for run in results.runs
            if run.status == "error"] + _nothing_ran(results)


def _nothing_ran(results: Results) -> list[str]:
    runs = results.runs
    if any(run.status == "ok" for run in runs):
        return []
    skipped = sum(run.status == "skipped" for run in runs)
    return [f"nothing ran: none of the grid's {results.missing_cells() + len(runs)} runs "
            f"finished ({skipped} skipped, {len(runs) - skipped} in error)"]


def backend_verdicts(results: Results) -> list[tuple[str, str, str]]:
    """(backend, runs summary, verdict) per backend: agrees, or its worst difference and where."""
    rows = []
    for backend in results.backends:
        runs = [r for r in results.runs if r.backend == backend]
        counts = {s: sum(r.status == s for r in runs) for s in ("ok", "skipped", "error")}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "not run yet"
        compared = [r for r in runs if r.status == "ok" and r.verdict]
        differing = [r for r in compared if r.agrees is False]
        failed = [r for r in runs if r.status == "error"]
        if differing:
            worst = max(differing, key=lambda r: number((r.verdict or {})["worst_rel"]))
            text = (f"{(worst.verdict or {})['text']} ({worst.experiment}, {worst.device}, "
                    f"{worst.dtype})")
        elif failed:
            text = f"failed: {failed[0].experiment}: {failed[0].reason}"
        elif compared:
            worst_by_dtype: dict[str, float] = {}
            for r in compared:
                assert r.verdict is not None
                worst_by_dtype[r.dtype] = max(worst_by_dtype.get(r.dtype, 0.0),
                                              number(r.verdict["worst_rel"]))
            text = "agrees (largest relative difference " + ", ".join(
                f"{v:.1e} in {d}" for d, v in sorted(worst_by_dtype.items())) + ")"
        elif runs and all(r.status == "skipped" for r in runs):
            text = f"skipped: {runs[0].reason}"
        else:
            text = "nothing compared"
        rows.append((backend, summary, text))
    return rows


def status_text(run: RunRecord, width: int = 200) -> str:
    """A run's verdict, 'measured' for a run not compared, or its status and first reason line."""
    if run.status != "ok":
        reason = run.reason.splitlines()[0] if run.reason else ""
        reason = reason if len(reason) <= width else reason[:width - 1] + "…"
        return f"{run.status}: {reason}"
    return run.verdict["text"] if run.verdict else "measured"


def time_text(run: RunRecord) -> str:
    """A run's time for the tables: the median of its repeats with their spread."""
    if run.status != "ok" or not run.time:
        return "-"
    return noise.timed_text(run.time["run_s"], run.time.get("run_s_quantiles"))


def is_noisy(run: RunRecord) -> bool:
    quantiles = (run.time or {}).get("run_s_quantiles")
    return quantiles is not None and noise.noisy(quantiles)


def number(value: Any) -> float:
    """A difference read from JSON: null (a non-finite one) counts as infinite."""
    return math.inf if value is None else float(value)


def sci(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return f"{float(value):.1e}"


# ---------------------------------------------------------------------- report.md


def finish(results: Results, directory: Path) -> list[Path]:
    """Write the plots (when matplotlib is installed) and report.md; return what was written."""
    try:
        from gradbridge.experiments import plots
    except ImportError:  # pragma: no cover - matplotlib is the 'plot' extra
        written: list[Path] = []
        note = "No plots: matplotlib is not installed (pip install 'gradbridge[plot]')."
    else:
        written = plots.make_plots(results, directory)
        note = ""
    manifest = store.read_json(directory / "manifest.json")
    store.atomic_write(directory / "report.md", render(results, manifest, written, note))
    return [*written, directory / "report.md"]


def render(results: Results, manifest: Mapping[str, Any], plots: list[Path],
           plot_note: str = "") -> str:
    """report.md: the machine, the method, a verdict per backend, the runs, each experiment's
    outputs against its reference, the plots."""
    lines = ["# gradbridge compare: do the frameworks agree, and which is fastest here?", "",
             _machine_line(manifest), ""]
    lines += [
        "Every run is compared with its experiment's reference: a hand-written one where the "
        "experiment has it (plain float64 NumPy, independent of gradbridge's backends), else "
        "the same function run on NumPy in float64. For each output the relative difference "
        "is max|x - ref| / max|ref| (normwise), at every step for outputs that are series. A "
        "run **agrees** when every output stays within its experiment's tolerance (below) at "
        "every step; otherwise its verdict names the output that differs most, by how much, "
        "and from which step (counted from 0).", "",
        "| experiment | what | tolerance float64 | tolerance float32 |", "|---|---|---|---|"]
    lines += [f"| {name} | {cell_text(e.description) or '-'} | {e.tolerances.float64:.0e} | "
              f"{e.tolerances.float32:.0e} |" if e.compared else
              f"| {name} | {cell_text(e.description) or '-'} | not compared | not compared |"
              for name, e in results.experiments.items()]
    lines += ["", "## Verdict per backend", "", "| backend | runs | verdict |", "|---|---|---|"]
    lines += [f"| {b} | {s} | {cell_text(t)} |" for b, s, t in backend_verdicts(results)]
    lines += ["", "## Every run", "",
              "| experiment | backend | device | dtype | verdict | max rel diff | max abs diff | "
              "time | compile | peak RSS (MB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in results.runs:
        verdict = run.verdict or {}
        rss = (run.memory or {}).get("host_peak_rss_mb")
        lines.append(
            f"| {run.experiment} | {run.backend} | {run.device} | {run.dtype} | "
            f"{cell_text(status_text(run))} | {sci(verdict.get('worst_rel'))} | "
            f"{sci(verdict.get('worst_abs'))} | {time_text(run)} | "
            f"{noise.format_seconds((run.time or {}).get('compile_s'))} | "
            f"{'-' if rss is None else f'{rss:.0f}'} |")
    lines += ["", "Time: the median of the experiment's repeated calls after a first one, with "
              "their interquartile range (IQR) as a share of it; the device is synchronized "
              "before clocks are read. Compile: how much longer the first call took (tracing, "
              "compiling, one-off costs); '-' when that is within the repeats' spread. Peak RSS "
              "is the process's resident memory at its highest during the run (device memory "
              "is in results.json for CUDA runs)."]
    if any(run.status == "ok" and is_noisy(run) for run in results.runs):
        lines += ["", noise.CONTENDED_NOTE]
    lines += _explanations(results)
    for name, experiment in results.experiments.items():
        lines += _output_section(results, name)
        if experiment.section is not None:
            lines += experiment.section(results, name)
    lines += _not_run_section(results)
    lines += ["", "## Plots", ""]
    if plot_note:
        lines.append(plot_note)
    lines += [f"![{p.stem.replace('_', ' ')}]({p.name})" for p in plots]
    lines += ["", "## Files", "",
              "- `results.json`: every run with its outputs, differences and verdict",
              "- `results.csv`: one row per run",
              "- `manifest.json`: versions, machine, precision flags, seeds, command line",
              "- `runs/`: one file per finished run (what `--resume` keeps)", ""]
    return "\n".join(lines)


def _output_section(results: Results, name: str) -> list[str]:
    """Per output, each run's largest relative difference, and for a series where it began."""
    experiment = results.experiments[name]
    runs = [r for r in results.ok(name) if r.differences]
    if not runs:
        return []
    outputs = list(runs[0].differences)
    lines = ["", f"## {name}: every output against the reference", "",
             f"{experiment.description + '. ' if experiment.description else ''}Largest "
             f"relative difference per output; for a series, the first {experiment.step} beyond "
             "tolerance in brackets.", "",
             "| backend | device | dtype | " + " | ".join(f"`{o}`" for o in outputs) + " |",
             "|---|---|---|" + "---|" * len(outputs)]
    for run in runs:
        tolerance = results.tolerance(name, run.dtype)
        cells = []
        for output in outputs:
            rel = run.differences.get(output, {}).get("rel", [])
            text = sci(max((number(r) for r in rel), default=0.0))
            beyond = [i for i, r in enumerate(rel) if not number(r) <= tolerance]
            if beyond and output in experiment.series:
                text += f" (from {experiment.step} {beyond[0]})"
            cells.append(f"**{text}**" if beyond else text)
        lines.append(f"| {run.backend} | {run.device} | {run.dtype} | {' | '.join(cells)} |")
    return lines


def _explanations(results: Results) -> list[str]:
    explained = [r for r in results.runs if r.explanation]
    if not explained:
        return []
    return ["", "## Where the differences start", "",
            *[f"- {r.where}: {cell_text(r.explanation or '')}" for r in explained]]


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


def _not_run_section(results: Results) -> list[str]:
    runs = [r for r in results.runs if r.status != "ok"]
    missing = results.missing_cells()
    if not runs and not missing:
        return []
    lines = ["", "## Skipped and failed runs", ""]
    lines += [f"- {r.where}: **{r.status}**: {cell_text(r.reason)}" for r in runs]
    if missing:
        lines.append(f"- {missing} run(s) of the grid have not run yet (finish them with "
                     "`--resume`)")
    return lines


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def cell_text(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")

