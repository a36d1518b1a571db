"""Running the grid cell by cell, safe to kill.

Each finished run is written at once as its own file ``runs/<cell>.json`` (see
:mod:`gradbridge.experiments.store`), and ``results.json`` / ``results.csv`` are re-assembled
after it, so killing a comparison at any moment leaves only complete files. ``--resume`` reads
the grid back from ``manifest.json`` and runs only the cells that have no finished run file
made with the same settings by the same code.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradbridge.core.backend import Backend, InvalidArgument
from gradbridge.experiments import manifest, report, store
from gradbridge.experiments.agreement import differences, verdict
from gradbridge.experiments.api import Experiment, ExperimentError, Outputs
from gradbridge.experiments.grid import (
    Cell,
    Grid,
    cells,
    check_devices,
    grid_differences,
    grid_from_options,
    seeds,
)
from gradbridge.experiments.memory import PeakMemory
from gradbridge.experiments.record import Results, RunRecord


@dataclass(frozen=True)
class Event:
    """Progress news for a display: a run starts, finishes, is kept from an earlier run, or an
    earlier run's file is redone (``status`` then says why)."""

    kind: str  # "start", "done", "kept" or "redo"
    cell: Cell
    status: str = ""


# ---------------------------------------------------------------- starting and resuming


def read_manifest(path: Path) -> dict[str, Any]:
    """``manifest.json`` with a valid grid; an unreadable or corrupt one is an error naming it."""
    try:
        record = store.read_json(path)
        Grid.from_dict(record["grid"])
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {os.strerror(exc.errno or 0).lower()}; "
                              "fix its permissions or choose another --out") from exc
    except InvalidArgument:
        raise  # the grid reads, but an experiment no longer loads or takes its settings
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        what = "not valid JSON" if isinstance(exc, json.JSONDecodeError) else "no valid grid"
        raise InvalidArgument(f"{path} is corrupt ({what}), so its comparison cannot be "
                              "resumed; start a new one with another --out") from exc
    return dict(record)


def prepare(directory: Path, grid: Grid | None, *, resume: bool, argv: Sequence[str]) -> Grid:
    """Check the grid against the machine and the directory; write the starting manifest.

    Without ``resume`` the directory must not hold runs already. With it, the grid stored in
    the directory is the one finished, and a different ``grid`` given is an error.
    """
    if directory.exists() and not directory.is_dir():
        raise InvalidArgument(f"cannot write results to {directory}: it is a file, not a "
                              "directory; choose another --out")
    manifest_path = directory / "manifest.json"
    record: dict[str, Any]
    if resume:
        if not manifest_path.is_file():
            raise InvalidArgument(f"nothing to resume in {directory}: it has no manifest.json; "
                                  "run without --resume to start a comparison there")
        record = read_manifest(manifest_path)
        stored = Grid.from_dict(record["grid"])
        if grid is not None and (changed := grid_differences(stored, grid)):
            raise InvalidArgument(
                f"{directory} holds a comparison of another grid ({'; '.join(changed)}); "
                "resume it without grid options, or choose another --out")
        grid = stored
        record.pop("finished", None)  # finished again only when this run reaches the end
        record.setdefault("resumed", []).append({"command": list(argv), "at": manifest.now()})
    else:
        if any((directory / "runs").glob("*.json")):
            raise InvalidArgument(f"{directory} already holds results; add --resume to finish "
                                  "that comparison, or choose another --out")
        grid = grid or grid_from_options()
        record = {"schema": 2, "command": list(argv), "started": manifest.now(),
                  "grid": grid.as_dict(), "seeds": seeds(grid), "resumed": []}
    for name, experiment in grid.loaded().items():  # ranges and memory, before anything runs
        experiment.settings(grid.settings_of(name))
    check_devices(grid)
    store.make_directory(directory / "runs")
    for stale in directory.rglob(f"*{store.TEMP_SUFFIX}"):
        stale.unlink()  # a write cut off by a kill; its target still holds the last version
    record["environment"] = manifest.environment(list(grid.backends))
    store.write_json(manifest_path, record)
    return grid


# ------------------------------------------------------------------------- running


def references(grid: Grid) -> tuple[dict[str, Outputs], dict[str, dict[str, Outputs]]]:
    """Each compared experiment's reference outputs, and its alternates, on the host."""
    refs, alternates = {}, {}
    for name, experiment in grid.loaded().items():
        if experiment.compared:
            settings = grid.settings_of(name)
            refs[name] = experiment.reference_outputs(settings)
            if experiment.alternates:
                alternates[name] = experiment.alternate_outputs(settings)
    return refs, alternates


def run_grid(grid: Grid, directory: Path, on_event: Callable[[Event], None] | None = None, *,
             explain: bool = False) -> Results:
    """Run every cell without a finished run file of the same settings; return the results.
    With ``explain``, a run that disagrees also says where its difference is born."""
    notify = on_event or (lambda event: None)
    experiments = grid.loaded()
    refs, alternates = references(grid)
    records: dict[tuple[str, str, str, str], RunRecord] = {}

    def results() -> Results:
        return assemble(grid, experiments, refs, alternates,
                        [records[c.key] for c in cells(grid) if c.key in records])

    for cell in cells(grid):
        path = directory / "runs" / cell.filename
        settings = grid.settings_of(cell.experiment)
        experiment = experiments[cell.experiment]
        kept, why = store.stored_run(path, cell.key, settings, experiment.digest)
        if kept is not None:
            records[cell.key] = kept
            notify(Event("kept", cell, kept.status))
            continue
        if why:
            notify(Event("redo", cell, f"{path} {why}; running it again"))
        notify(Event("start", cell))
        records[cell.key] = run_cell(cell, experiment, settings, refs.get(cell.experiment),
                                     alternates.get(cell.experiment, {}),
                                     backend_named=grid.backends_named, explain=explain)
        store.write_json(path, records[cell.key].as_dict())
        report.write_results(results(), directory)
        notify(Event("done", cell, records[cell.key].status))
    final = results()
    report.write_results(final, directory)
    _refresh_manifest(directory, grid)
    return final


def assemble(grid: Grid, experiments: Mapping[str, Experiment], refs: Mapping[str, Outputs],
             alternates: Mapping[str, Mapping[str, Outputs]],
             runs: Sequence[RunRecord]) -> Results:
    """The results document: grid, references, alternates and the runs, in grid order."""
    return Results(
        grid=grid.as_dict(), experiments=dict(experiments),
        references={name: {k: v.tolist() for k, v in ref.items()} for name, ref in refs.items()},
        alternates={name: {label: {k: v.tolist() for k, v in alt.items()}
                           for label, alt in by_label.items()}
                    for name, by_label in alternates.items()},
        runs=list(runs))


def _refresh_manifest(directory: Path, grid: Grid) -> None:
    """Rewrite the manifest's environment now that the frameworks have set their flags."""
    path = directory / "manifest.json"
    record = store.read_json(path)
    record["environment"] = manifest.environment(list(grid.backends))
    record["finished"] = manifest.now()
    store.write_json(path, record)


def run_cell(cell: Cell, experiment: Experiment, settings: Mapping[str, Any],
             reference: Outputs | None, alternates: Mapping[str, Outputs] | None = None, *,
             backend_named: bool = False, explain: bool = False) -> RunRecord:
    """Run one cell: error if it raises or its named backend cannot load; skipped if a backend
    it was not asked for by name cannot load, or its device lacks the dtype. An experiment
    that returns no mapping of outputs is an ExperimentError, not a failed run."""
    from gradbridge.config import get_backend

    record = RunRecord(*cell.key, started=manifest.now(), settings=dict(settings),
                       source=experiment.digest)
    try:
        be = get_backend(cell.backend, device=cell.device, dtype=cell.dtype)
    except Exception as exc:  # any failure to load means this backend cannot run here
        if backend_named:
            return _failed(record, "error", f"the {cell.backend} backend cannot load: {exc}")
        return _failed(record, "skipped", str(exc))
    if cell.dtype == "float64" and not be.capabilities.supports_float64:
        return _failed(record, "skipped", f"{cell.backend} on {cell.device} does not support "
                                          "float64")
    try:
        with PeakMemory(be) as memory:
            outputs, record.time = timed_calls(lambda: experiment.run(be, settings), be,
                                               experiment.repeats)
    except ExperimentError:
        raise
    except Exception as exc:  # one failing run is recorded; the rest of the grid goes on
        return _failed(record, "error", experiment.failure(exc))
    record.outputs = {k: v.tolist() for k, v in outputs.items()}
    record.memory = memory.result
    if reference is None:
        return record
    try:
        judge(record, outputs, reference, alternates or {}, experiment,
              experiment.tolerances.for_dtype(cell.dtype))
    except ValueError as exc:
        return _failed(record, "error", f"not comparable: {exc}")
    if explain and record.agrees is False:
        record.explanation = explanation(experiment, be, settings)
    return record


def explanation(experiment: Experiment, be: Backend, settings: Mapping[str, Any]) -> str:
    """Where a disagreeing run's difference is born (gradbridge.testing.explain, against the
    experiment on NumPy float64), or why no single statement can be named."""
    from gradbridge.testing import explain

    try:
        found = explain(experiment.fn, be, settings=experiment.arguments(settings))
    except Exception as exc:  # the run itself worked: a failed explanation is only reported
        return f"could not explain: {type(exc).__name__}: {exc}"
    if found is None:
        return ("no single statement differs beyond rounding: the difference grows from "
                "rounding carried through the run")
    return str(found)


def _failed(record: RunRecord, status: str, reason: str) -> RunRecord:
    record.status, record.reason = status, reason
    return record


def judge(record: RunRecord, outputs: Outputs, reference: Outputs,
          alternates: Mapping[str, Outputs], experiment: Experiment, tolerance: float) -> None:
    """Fill in a run's differences from its reference, its verdict, and its alternates."""
    diffs = differences(outputs, reference, experiment.series)
    record.differences = {k: {"abs": d.abs, "rel": d.rel} for k, d in diffs.items()}
    record.verdict = verdict(diffs, tolerance, series=experiment.series,
                             step=experiment.step).as_dict()
    for label, alternate in alternates.items():
        extra = differences(outputs, alternate, experiment.series)
        record.also_compared[label] = {"max_abs": max(d.worst_abs for d in extra.values()),
                                       "max_rel": max(d.worst_rel for d in extra.values())}


def timed_calls(call: Callable[[], Outputs], be: Backend,
                repeats: int) -> tuple[Outputs, dict[str, Any]]:
    """The first call's outputs; its time, and the median and quantiles of ``repeats`` more.

    The first call pays tracing and compilation; ``compile_s`` is its excess over the repeats'
    median, None when that is within twice their interquartile range or half their median
    (nothing compiled, or only noise).
    """
    start = time.perf_counter()
    outputs = call()
    be.synchronize()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        be.synchronize()
        times.append(time.perf_counter() - start)
    if not times:
        return outputs, {"first_s": first, "run_s": first, "run_s_quantiles": None,
                         "compile_s": None, "repeats": 0}
    quantiles = [float(q) for q in np.quantile(times, [0, 0.25, 0.5, 0.75, 1])]
    excess = first - quantiles[2]
    noise = max(2 * (quantiles[3] - quantiles[1]), 0.5 * quantiles[2])
    compile_s = excess if excess > noise else None
    return outputs, {"first_s": first, "run_s": quantiles[2], "run_s_quantiles": quantiles,
                     "compile_s": compile_s, "repeats": repeats}
