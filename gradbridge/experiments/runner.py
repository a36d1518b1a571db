"""The comparison grid: experiment x backend x device x dtype, run cell by cell, safe to kill.

Each finished run is written at once as its own file ``runs/<cell>.json`` (see
:mod:`gradbridge.experiments.store`), and ``results.json`` / ``results.csv`` are re-assembled
after it, so killing a comparison at any moment leaves only complete files. ``--resume`` reads
the grid back from ``manifest.json`` and runs only the cells that have no finished run file
made with the same settings. Experiments are found through :mod:`~gradbridge.experiments.loader`
and are all alike here: built-in or the user's own, none is named.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradbridge.config import read_toml
from gradbridge.core.backend import (
    DTYPES,
    Backend,
    DeviceNotAvailable,
    InvalidArgument,
    normalize_device,
    normalize_dtype,
)
from gradbridge.experiments import loader, manifest, report, store
from gradbridge.experiments.agreement import differences, verdict
from gradbridge.experiments.api import Experiment, ExperimentError, Outputs, Tolerances
from gradbridge.experiments.record import Results, RunRecord

# -------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Grid:
    """What to run: experiments x backends x devices x dtypes, and each experiment's settings.

    ``experiments`` are references as :func:`loader.load` takes them; ``settings`` maps each
    experiment's name to its full settings; ``tolerance`` overrides every experiment's own.
    """

    experiments: tuple[str, ...]
    backends: tuple[str, ...]
    devices: tuple[str, ...]
    dtypes: tuple[str, ...]
    settings: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    backends_named: bool = False  # chosen by the user: one that cannot run is a failure
    tolerance: Mapping[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"experiments": list(self.experiments), "backends": list(self.backends),
                "devices": list(self.devices), "dtypes": list(self.dtypes),
                "settings": {k: dict(v) for k, v in self.settings.items()},
                "backends_named": self.backends_named,
                "tolerance": None if self.tolerance is None else dict(self.tolerance)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Grid:
        grid = cls(tuple(data["experiments"]), tuple(data["backends"]), tuple(data["devices"]),
                   tuple(data["dtypes"]), {k: dict(v) for k, v in data["settings"].items()},
                   bool(data.get("backends_named", False)), data.get("tolerance"))
        for name, experiment in grid.loaded().items():  # stored settings must still be valid
            experiment.settings(grid.settings.get(name, {}), where="the stored grid")
        return grid

    def loaded(self) -> dict[str, Experiment]:
        """The grid's experiments by name, with ``tolerance`` applied (files imported once)."""
        found: dict[str, Experiment] = {}
        for reference in self.experiments:
            experiment = loader.load(reference)
            if experiment.name in found:
                raise ExperimentError(f"two experiments are called {experiment.name} "
                                      f"({found[experiment.name].where} and {experiment.where});"
                                      " rename one of the functions")
            if self.tolerance is not None:
                tolerances = Tolerances(**{**dataclasses.asdict(experiment.tolerances),
                                           **self.tolerance})
                experiment = dataclasses.replace(experiment, tolerances=tolerances)
            found[experiment.name] = experiment
        return found

    def settings_of(self, experiment: str) -> dict[str, Any]:
        return dict(self.settings.get(experiment, {}))


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    experiment: str
    backend: str
    device: str
    dtype: str

    @property
    def label(self) -> str:
        return f"{self.experiment} {self.backend} {self.device} {self.dtype}"

    @property
    def filename(self) -> str:
        device = self.device.replace(":", "")
        return f"{self.experiment}__{self.backend}__{device}__{self.dtype}.json"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.experiment, self.backend, self.device, self.dtype)


@dataclass(frozen=True)
class Event:
    """Progress news for a display: a run starts, finishes, is kept from an earlier run, or an
    earlier run's file is redone (``status`` then says why)."""

    kind: str  # "start", "done", "kept" or "redo"
    cell: Cell
    status: str = ""


def cells(grid: Grid) -> list[Cell]:
    """The grid's runs in order: experiments outermost (cheap ones first), dtypes innermost."""
    return [Cell(e, b, d, t) for e in grid.loaded() for b in grid.backends
            for d in grid.devices for t in grid.dtypes]


def grid_from_options(*, backends: Sequence[str] | None = None,
                      devices: Sequence[str] | None = None,
                      dtypes: Sequence[str] | None = None,
                      experiments: Sequence[str] | None = None,
                      settings: Mapping[str, Mapping[str, Any]] | None = None,
                      text: bool = False, where: str = "--set",
                      tolerance: Mapping[str, float] | None = None) -> Grid:
    """A validated Grid; None means the default (every known backend, cpu, both dtypes, every
    built-in experiment). ``settings`` maps experiment names to settings (``text``: strings to
    parse, as from ``--set``); ``where`` says where they came from, for errors."""
    from gradbridge.core.registry import known_specs, spec_for

    references = _unique("experiments", experiments, loader.builtin_names(), loader.canonical)
    if tolerance is not None:
        Tolerances(**tolerance)  # checked here, where it was given
    grid = Grid(
        experiments=references,
        backends=_unique("backends", backends, list(known_specs()), lambda b: spec_for(b).name),
        devices=_unique("devices", devices, ["cpu"], _concrete_device),
        dtypes=_unique("dtypes", dtypes, list(DTYPES), normalize_dtype),
        backends_named=backends is not None, tolerance=tolerance)
    loaded = grid.loaded()
    given = dict(settings or {})
    for name in given:
        if name not in loaded:
            raise InvalidArgument(f"{where} names experiment {name!r}, which is not in the grid "
                                  f"({', '.join(loaded)}); add it to the experiments or drop "
                                  "its settings")
    return dataclasses.replace(grid, settings={
        name: experiment.settings(given.get(name, {}), where=where, text=text)
        for name, experiment in loaded.items()})


def parse_sets(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``["fn.key=value", ...]`` (the ``--set`` options) as ``{fn: {key: value}}``."""
    result: dict[str, dict[str, str]] = {}
    for item in items:
        name, dot, rest = item.partition(".")
        key, equals, value = rest.partition("=")
        if not (dot and equals and name and key.strip()):
            raise InvalidArgument(f"--set {item!r} is not valid; write --set "
                                  "EXPERIMENT.KEY=VALUE, e.g. --set spring.steps=100")
        result.setdefault(name.strip(), {})[key.strip()] = value
    return result


def _unique(what: str, names: Sequence[str] | None, default: Sequence[str],
            canonical: Callable[[str], str]) -> tuple[str, ...]:
    """Canonical names without repeats, in the order given; None means ``default``."""
    result: list[str] = []
    for name in default if names is None else names:
        value = canonical(name)
        if value not in result:
            result.append(value)
    if not result:
        raise InvalidArgument(f"{what} is empty; name at least one")
    return tuple(result)


def _concrete_device(device: str) -> str:
    name = normalize_device(device)
    if name == "auto":
        raise InvalidArgument("compare needs concrete devices (cpu, cuda, cuda:N), not 'auto', "
                              "so that every result says where it ran")
    return name


# ----------------------------------------------------------------------- config files

GRID_KEYS = ("backends", "devices", "dtypes", "experiments")
OPTION_KEYS = ("out", "check", "quiet")
TOLERANCE_TABLE = "tolerance"


@dataclass(frozen=True)
class Config:
    """A comparison read from a TOML file: the grid, and where and how to write it."""

    grid: Grid
    out: str | None = None
    check: bool = False
    quiet: bool = False


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML comparison file; unknown keys and wrong types are errors.

    Top-level keys: backends, devices, dtypes, experiments (lists; a file experiment's path is
    relative to the config file), out (relative to the working directory), check, quiet; a
    table per experiment sets its settings, and [tolerance] overrides every experiment's.
    """
    path = Path(path)
    data = read_toml(path)
    lists = {key: _string_list(path, key, data[key]) for key in GRID_KEYS if key in data}
    if "experiments" in lists:
        lists["experiments"] = [_beside(path, e) for e in lists["experiments"]]
    tables = {k: v for k, v in data.items() if k not in (*GRID_KEYS, *OPTION_KEYS)}
    for key, value in tables.items():
        if not isinstance(value, Mapping):
            raise InvalidArgument(f"{path}: unknown key {key!r}; valid keys: "
                                  f"{', '.join((*GRID_KEYS, *OPTION_KEYS))}, and a table per "
                                  "experiment ([name]) or [tolerance]")
    for key in ("check", "quiet"):
        if key in data and not isinstance(data[key], bool):
            raise InvalidArgument(f"{path}: {key} must be true or false; got {data[key]!r}")
    if "out" in data and not isinstance(data["out"], str):
        raise InvalidArgument(f"{path}: out must be a string (a directory); got {data['out']!r}")
    tolerance = tables.pop(TOLERANCE_TABLE, None)
    try:
        if tolerance is not None and set(tolerance) - set(DTYPES):
            raise InvalidArgument(f"unknown key in [tolerance]; valid keys: {', '.join(DTYPES)}")
        grid = grid_from_options(backends=lists.get("backends"), devices=lists.get("devices"),
                                 dtypes=lists.get("dtypes"),
                                 experiments=lists.get("experiments"), settings=tables,
                                 where=str(path), tolerance=tolerance)
    except InvalidArgument as exc:
        message = str(exc)
        raise type(exc)(message if message.startswith(str(path)) else f"{path}: {message}"
                        ) from exc
    return Config(grid, data.get("out"), data.get("check", False), data.get("quiet", False))


def _beside(config: Path, reference: str) -> str:
    """A file experiment's path taken relative to the config file that names it."""
    source, colon, function = reference.rpartition(":")
    if colon and source.endswith(".py") and not Path(source).expanduser().is_absolute():
        return f"{config.parent / source}:{function}"
    return reference


def _string_list(path: Path, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{path}: {key} must be a list of strings, e.g. "
                              f"{key} = [\"a\", \"b\"]; got {value!r}")
    return value


# ---------------------------------------------------------------- output directories


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


def grid_differences(stored: Grid, given: Grid) -> list[str]:
    """``"what: stored X, given Y"`` for each list and setting in which two grids differ."""
    def flat(grid: Grid) -> dict[str, str]:
        lists = {k: ",".join(v) for k, v in grid.as_dict().items() if isinstance(v, list)}
        values = {f"{name}.{k}": str(v) for name, table in grid.settings.items()
                  for k, v in table.items()}
        return {**lists, **values, "tolerance": str(grid.tolerance)}

    old, new = flat(stored), flat(given)
    return [f"{k}: stored {old.get(k)}, given {new.get(k)}" for k in {**old, **new}
            if old.get(k) != new.get(k)]


def seeds(grid: Grid) -> dict[str, dict[str, Any]]:
    """Every seed the comparison's numbers depend on, with what it draws."""
    return {f"{name}.{key}": {"value": grid.settings_of(name).get(key), "draws": what}
            for name, experiment in grid.loaded().items()
            for key, what in experiment.seeds.items()}


def check_devices(grid: Grid) -> None:
    """Every device asked for must exist for some backend in the grid; else name those that do."""
    from gradbridge.core.registry import describe

    wanted = [d for d in grid.devices if d != "cpu"]
    if not wanted:
        return
    reachable = {d for b in grid.backends for d in describe(b).devices} | {"cpu"}
    missing = [d for d in wanted if d not in reachable]
    if missing:
        gpu = any(d.startswith("cuda") for d in reachable)
        raise DeviceNotAvailable(
            f"device {', '.join(missing)} is not available to any of the backends "
            f"{', '.join(grid.backends)} on this machine; devices that exist: "
            f"{', '.join(sorted(reachable))}"
            + ("" if gpu else " (no CUDA GPU was found: use --devices cpu)"))


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


def run_grid(grid: Grid, directory: Path,
             on_event: Callable[[Event], None] | None = None) -> Results:
    """Run every cell without a finished run file of the same settings; return the results."""
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
                                     backend_named=grid.backends_named)
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
             backend_named: bool = False) -> RunRecord:
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
    return record


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


# -------------------------------------------------------------------------- memory


class PeakMemory:
    """Peak host memory (RSS) during a block, and on CUDA the framework allocator's peak.

    RSS is sampled every few milliseconds and combined with the kernel's high-water mark
    (exact whenever the block sets a new process peak), since no framework-neutral call
    reports the peak of one stretch of a process.
    """

    interval_s = 0.005

    def __init__(self, be: Backend) -> None:
        self.be = be
        self.result: dict[str, float | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._peak = self._baseline = 0
        self._high_water = 0

    def __enter__(self) -> PeakMemory:
        self._high_water = _high_water_rss()
        self._baseline = self._peak = _current_rss() or 0
        reset_device_peak(self.be)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, _current_rss() or 0)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        peak = max(self._peak, _current_rss() or 0)
        if (high_water := _high_water_rss()) > self._high_water:
            peak = max(peak, high_water)
        device = device_peak(self.be)
        self.result = {"host_peak_rss_mb": peak / 2**20,
                       "host_rss_increase_mb": (peak - self._baseline) / 2**20,
                       "device_peak_mb": None if device is None else device / 2**20}


def _current_rss() -> int | None:
    """This process's resident set size in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _high_water_rss() -> int:
    """The process's peak RSS so far in bytes (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _cuda_framework(be: Backend) -> Any:
    """The loaded framework module when ``be`` runs on CUDA, else None (never imports one)."""
    if not be.device.startswith("cuda"):
        return None
    return sys.modules.get(be.name) if be.name in ("torch", "jax") else None


def reset_device_peak(be: Backend) -> None:
    """Start the CUDA allocator's peak counter afresh where the framework allows (torch)."""
    torch = _cuda_framework(be)
    if torch is not None and be.name == "torch":
        torch.cuda.reset_peak_memory_stats(be.device)


def device_peak(be: Backend) -> int | None:
    """Peak bytes held by the framework's CUDA allocator (JAX: since the process started)."""
    framework = _cuda_framework(be)
    if framework is None:
        return None
    if be.name == "torch":
        return int(framework.cuda.max_memory_allocated(be.device))
    index = int(be.device.split(":")[1])
    stats = framework.devices("gpu")[index].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else int(peak)

