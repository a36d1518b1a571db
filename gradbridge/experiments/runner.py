"""The comparison grid: experiment x backend x device x dtype, run cell by cell, safe to kill.

Each finished run is written at once as its own file ``runs/<cell>.json`` (temp file +
``os.replace``), and ``results.json`` / ``results.csv`` are re-assembled the same way after it,
so killing a comparison at any moment leaves only complete files. ``--resume`` reads the grid
back from ``manifest.json`` and runs only the cells that have no finished run file made with
the same settings (each run file stores the settings its experiment uses).
"""

from __future__ import annotations

import dataclasses
import datetime
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

from gradbridge.config import read_toml
from gradbridge.core import data
from gradbridge.core.backend import (
    DTYPES,
    Backend,
    DeviceNotAvailable,
    InvalidArgument,
    normalize_device,
    normalize_dtype,
)
from gradbridge.experiments import catalog, manifest, report
from gradbridge.experiments.agreement import differences, verdict
from gradbridge.experiments.catalog import Outcome, Settings

RESULTS_ROOT = Path("results")
KEPT_STATUSES = ("ok", "skipped")  # finished runs that --resume keeps; errors are redone


# -------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Grid:
    """What to run: experiments x backends x devices x dtypes, and the experiments' settings."""

    experiments: tuple[str, ...]
    backends: tuple[str, ...]
    devices: tuple[str, ...]
    dtypes: tuple[str, ...]
    settings: Settings = dataclasses.field(default_factory=Settings)
    backends_named: bool = False  # chosen by the user: one that cannot run is a failure

    def as_dict(self) -> dict[str, Any]:
        return {"experiments": list(self.experiments), "backends": list(self.backends),
                "devices": list(self.devices), "dtypes": list(self.dtypes),
                "settings": self.settings.as_dict(), "backends_named": self.backends_named}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Grid:
        return cls(tuple(data["experiments"]), tuple(data["backends"]), tuple(data["devices"]),
                   tuple(data["dtypes"]), catalog.settings_from_mapping(data["settings"]),
                   bool(data.get("backends_named", False)))  # older manifests lack the flag

    def settings_of(self, experiment: str) -> dict[str, Any]:
        """The settings ``experiment``'s numbers depend on, as ``{"section.key": value}``."""
        return self.settings.flat(catalog.get(experiment).uses)


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

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Event:
    """Progress news for a display: a run starts, finishes, is kept from an earlier run, or an
    earlier run's file is redone (``status`` then says why)."""

    kind: str  # "start", "done", "kept" or "redo"
    cell: Cell
    status: str = ""


def cells(grid: Grid) -> list[Cell]:
    """The grid's runs in order: experiments outermost (cheap ones first), dtypes innermost."""
    return [Cell(e, b, d, t) for e in grid.experiments for b in grid.backends
            for d in grid.devices for t in grid.dtypes]


def grid_from_options(*, backends: Sequence[str] | None = None,
                      devices: Sequence[str] | None = None,
                      dtypes: Sequence[str] | None = None,
                      experiments: Sequence[str] | None = None, epochs: int | None = None,
                      sizes: Sequence[str | int | float] | None = None,
                      repeats: int | None = None, quick: bool = False,
                      settings: Settings | None = None) -> Grid:
    """A validated Grid; None means the default (every known backend, cpu, both dtypes, all)."""
    from gradbridge.core.registry import known_specs, spec_for

    settings = settings or Settings()
    timing = catalog.QUICK_TIMING if quick else settings.timing
    timing = dataclasses.replace(
        timing,
        sizes=timing.sizes if sizes is None else tuple(_size(s) for s in sizes),
        repeats=timing.repeats if repeats is None else repeats)
    regression = settings.regression if epochs is None else dataclasses.replace(
        settings.regression, epochs=epochs)
    settings = dataclasses.replace(settings, timing=timing, regression=regression)
    grid = Grid(
        experiments=_unique("experiments", experiments, list(catalog.EXPERIMENTS),
                            lambda e: catalog.get(e).name),
        backends=_unique("backends", backends, list(known_specs()), lambda b: spec_for(b).name),
        devices=_unique("devices", devices, ["cpu"], _concrete_device),
        dtypes=_unique("dtypes", dtypes, list(DTYPES), normalize_dtype),
        settings=settings, backends_named=backends is not None,
    )
    given = {"--epochs": epochs, "--sizes": sizes, "--repeats": repeats}
    check_used(grid, {OPTION_SETTINGS[k]: k for k, v in given.items() if v is not None})
    return grid


OPTION_SETTINGS = {"--epochs": "regression.epochs", "--sizes": "timing.sizes",
                   "--repeats": "timing.repeats"}


def check_used(grid: Grid, given: Mapping[str, str]) -> None:
    """Each setting given (``{"section.key": how it was given}``) must matter to the grid."""
    for setting, how in given.items():
        users = catalog.users_of(setting)
        if not set(users) & set(grid.experiments):
            raise InvalidArgument(
                f"{how} is not used by any experiment in the grid "
                f"({', '.join(grid.experiments)}): {setting} is used only by "
                f"{', '.join(users)}; add {users[0]} to the experiments or drop {how}")


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


def _size(value: str | int | float) -> int:
    """A data size written as 100, '1e4' or 1e6."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (number.is_integer() and number >= 2):
        raise InvalidArgument(f"timing size {value!r} is not valid; expected a whole number "
                              ">= 2, such as 100 or 1e4")
    return int(number)


# ----------------------------------------------------------------------- config files

GRID_KEYS = ("backends", "devices", "dtypes", "experiments")
OPTION_KEYS = ("out", "check", "quiet")


@dataclass(frozen=True)
class Config:
    """A comparison read from a TOML file: the grid, and where and how to write it."""

    grid: Grid
    out: str | None = None
    check: bool = False
    quiet: bool = False


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML experiment file; unknown keys and wrong types are errors.

    Top-level keys: backends, devices, dtypes, experiments (lists of names), out (a directory,
    relative to the working directory), check, quiet (booleans); tables [regression],
    [mlp_gradients], [timing] and [tolerance] set the experiments' settings.
    """
    path = Path(path)
    data = read_toml(path)
    valid = (*GRID_KEYS, *OPTION_KEYS, *catalog.SECTIONS)
    for key in data:
        if key not in valid:
            raise InvalidArgument(f"{path}: unknown key {key!r}; valid keys: {', '.join(valid)}")
    lists = {key: _string_list(path, key, data[key]) for key in GRID_KEYS if key in data}
    for key in ("check", "quiet"):
        if key in data and not isinstance(data[key], bool):
            raise InvalidArgument(f"{path}: {key} must be true or false; got {data[key]!r}")
    if "out" in data and not isinstance(data["out"], str):
        raise InvalidArgument(f"{path}: out must be a string (a directory); got {data['out']!r}")
    try:
        settings = catalog.settings_from_mapping(
            {k: v for k, v in data.items() if k in catalog.SECTIONS})
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc}") from exc
    grid = grid_from_options(backends=lists.get("backends"), devices=lists.get("devices"),
                             dtypes=lists.get("dtypes"), experiments=lists.get("experiments"),
                             settings=settings)
    check_used(grid, {f"{section}.{key}": f"{section}.{key} in {path}"
                      for section in catalog.SECTIONS for key in data.get(section, {})})
    return Config(grid, data.get("out"), data.get("check", False), data.get("quiet", False))


def _string_list(path: Path, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{path}: {key} must be a list of strings, e.g. "
                              f"{key} = [\"a\", \"b\"]; got {value!r}")
    return value


# ---------------------------------------------------------------- output directories


def output_directory(out: str | None, *, resume: bool) -> Path:
    """--out if given; with --resume alone the newest unfinished results/ run; else a new one."""
    if out:
        return Path(out)
    if resume:
        return newest_unfinished()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    directory, n = RESULTS_ROOT / stamp, 1
    while directory.exists():
        n += 1
        directory = RESULTS_ROOT / f"{stamp}-{n}"
    return directory


def newest_unfinished() -> Path:
    """The newest comparison under results/ that has not finished; else an error listing them."""
    started = sorted(p.parent for p in RESULTS_ROOT.glob("*/manifest.json"))
    if not started:
        raise InvalidArgument(f"--resume without --out found nothing to resume: no "
                              f"{RESULTS_ROOT}/*/manifest.json here; pass --out DIR")
    unfinished = [p for p in started if not _finished(p)]
    if not unfinished:
        raise InvalidArgument(
            f"--resume without --out found no unfinished comparison: every one in "
            f"{RESULTS_ROOT}/ has finished ({', '.join(p.name for p in started)}); pass "
            "--out DIR to redo the failed runs of one, or start a new comparison")
    return max(unfinished, key=lambda p: p.stat().st_mtime)


def _finished(directory: Path) -> bool:
    """Whether the manifest says the comparison ran to its end (unreadable: not finished)."""
    try:
        return "finished" in read_manifest(directory / "manifest.json")
    except InvalidArgument:
        return False


def read_manifest(path: Path) -> dict[str, Any]:
    """``manifest.json`` with a valid grid; an unreadable or corrupt one is an error naming it."""
    try:
        record = report.read_json(path)
        Grid.from_dict(record["grid"])
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {os.strerror(exc.errno or 0).lower()}; "
                              "fix its permissions or choose another --out") from exc
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
        record = {"schema": 1, "command": list(argv), "started": manifest.now(),
                  "grid": grid.as_dict(), "seeds": seeds(grid.settings), "resumed": []}
    check_devices(grid)
    check_memory(grid)
    report.make_directory(directory / "runs")
    for stale in directory.rglob(f"*{report.TEMP_SUFFIX}"):
        stale.unlink()  # a write cut off by a kill; its target still holds the last version
    record["environment"] = manifest.environment(list(grid.backends))
    report.write_json(manifest_path, record)
    return grid


def grid_differences(stored: Grid, given: Grid) -> list[str]:
    """``"what: stored X, given Y"`` for each list and setting in which two grids differ."""
    def flat(grid: Grid) -> dict[str, str]:
        lists = {k: ",".join(v) for k, v in grid.as_dict().items() if isinstance(v, list)}
        return {**lists, **{k: str(v) for k, v in grid.settings.flat().items()}}

    old, new = flat(stored), flat(given)
    return [f"{k}: stored {old[k]}, given {new[k]}" for k in old if old[k] != new[k]]


def seeds(settings: Settings) -> dict[str, int]:
    """Every seed a comparison's numbers depend on."""
    return {"regression and timing data (np.random.seed, as the tutorial)":
            settings.regression.seed,
            "mlp_gradients data and initial parameters (numpy.random.default_rng)":
            settings.mlp_gradients.seed}


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


BYTES_PER_POINT = 128
"""Memory per data point that a run may hold at its peak. Measured for the timing sweep at
N = 2e6 in float64 on CPU (x, y and one epoch's work arrays): NumPy 36, JAX 78, PyTorch 92."""


def check_memory(grid: Grid) -> None:
    """Refuse up front a data size whose arrays cannot fit in this machine's memory."""
    sizes = {"regression": ("regression.n", grid.settings.regression.n),
             "timing": ("timing.sizes", max(grid.settings.timing.sizes))}
    for setting, n in (sizes[e] for e in grid.experiments if e in sizes):
        data.check_memory(float(n) * BYTES_PER_POINT,
                          f"{setting} N = {n:,} ({BYTES_PER_POINT} bytes per data point)",
                          "choose a smaller size")


# ------------------------------------------------------------------------- running


def run_grid(grid: Grid, directory: Path,
             on_event: Callable[[Event], None] | None = None) -> dict[str, Any]:
    """Run every cell without a finished run file of the same settings; return the results."""
    notify = on_event or (lambda event: None)
    references = {name: experiment.reference(grid.settings)
                  for name in grid.experiments
                  if (experiment := catalog.get(name)).reference is not None}
    records: dict[Cell, dict[str, Any]] = {}
    for cell in cells(grid):
        path = directory / "runs" / cell.filename
        kept, why = stored_run(path, cell, grid.settings_of(cell.experiment))
        if kept is not None:
            records[cell] = kept
            notify(Event("kept", cell, kept["status"]))
            continue
        if why:
            notify(Event("redo", cell, f"{path} {why}; running it again"))
        notify(Event("start", cell))
        records[cell] = {**run_cell(cell, grid.settings, references.get(cell.experiment),
                                    backend_named=grid.backends_named),
                         "settings": grid.settings_of(cell.experiment)}
        report.write_json(path, records[cell])
        report.write_results(assemble(grid, references, records), directory)
        notify(Event("done", cell, records[cell]["status"]))
    results = assemble(grid, references, records)
    report.write_results(results, directory)
    _refresh_manifest(directory, grid)
    return results


def stored_run(path: Path, cell: Cell,
               settings: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The finished run of ``cell`` at ``path`` to keep, else None and why it is not kept.

    A missing file or a run that ended in an error is simply redone (the reason is empty).
    """
    try:
        record = report.read_json(path)
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError):
        return None, "is unreadable or not valid JSON"
    if not isinstance(record, dict) or {**record, **cell.as_dict()} != record:
        return None, "is not a run record of this cell"
    if record.get("status") not in KEPT_STATUSES:
        return None, ""
    stored = record.get("settings")
    if not isinstance(stored, dict):
        return None, "holds no settings to check (an older gradbridge wrote it)"
    changed = [f"{k}: stored {stored.get(k)}, given {v}" for k, v in settings.items()
               if stored.get(k) != v]
    if changed:
        return None, f"was made with other settings ({'; '.join(changed)})"
    return record, ""


def assemble(grid: Grid, references: Mapping[str, Outcome],
             records: Mapping[Cell, dict[str, Any]]) -> dict[str, Any]:
    """The results document: grid, references and one record per finished cell, in grid order."""
    return {
        "schema": 1,
        "grid": grid.as_dict(),
        "tolerance": dataclasses.asdict(grid.settings.tolerance),
        "reference": {name: {**ref.as_dict(), "alternates": {
            k: {q: v.tolist() for q, v in alt.items()} for k, alt in ref.alternates.items()}}
            for name, ref in references.items()},
        "runs": [records[cell] for cell in cells(grid) if cell in records],
    }


def _refresh_manifest(directory: Path, grid: Grid) -> None:
    """Rewrite the manifest's environment now that the frameworks have set their flags."""
    path = directory / "manifest.json"
    record = report.read_json(path)
    record["environment"] = manifest.environment(list(grid.backends))
    record["finished"] = manifest.now()
    report.write_json(path, record)


def run_cell(cell: Cell, settings: Settings, reference: Outcome | None, *,
             backend_named: bool = False) -> dict[str, Any]:
    """Run one cell: error if it raises or its named backend cannot load; skipped if a backend
    it was not asked for by name cannot load, or its device lacks the dtype."""
    from gradbridge.config import get_backend

    record: dict[str, Any] = {**cell.as_dict(), "started": manifest.now()}
    try:
        be = get_backend(cell.backend, device=cell.device, dtype=cell.dtype)
    except Exception as exc:  # any failure to load means this backend cannot run here
        if backend_named:
            return {**record, "status": "error",
                    "reason": f"the {cell.backend} backend cannot load: {exc}"}
        return {**record, "status": "skipped", "reason": str(exc)}
    if cell.dtype == "float64" and not be.capabilities.supports_float64:
        return {**record, "status": "skipped",
                "reason": f"{cell.backend} on {cell.device} does not support float64"}
    experiment = catalog.get(cell.experiment)
    try:
        with PeakMemory(be) as memory:
            start = time.perf_counter()
            outcome = experiment.run(be, settings)
            be.synchronize()
            wall_s = time.perf_counter() - start
    except Exception as exc:  # one failing run is recorded; the rest of the grid goes on
        return {**record, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    record.update(status="ok", **outcome.as_dict(), wall_s=wall_s, memory=memory.result)
    if reference is None:
        return record
    try:
        judged = judge(outcome, reference, settings.tolerance.for_dtype(cell.dtype),
                       stepped=experiment.stepped)
    except ValueError as exc:
        return {**record, "status": "error", "reason": f"not comparable: {exc}"}
    return {**record, **judged}


def judge(outcome: Outcome, reference: Outcome, tolerance: float, *,
          stepped: bool) -> dict[str, Any]:
    """A run's differences from its reference, its verdict, and its distance to alternates."""
    diff = differences(outcome.series, reference.series)
    also = {}
    for name, alternate in reference.alternates.items():
        extra = differences(outcome.series, alternate)
        also[name] = {"max_abs": extra.worst_abs, "max_rel": extra.worst_rel}
    return {"differences": {"abs": diff.abs, "rel": diff.rel},
            "verdict": verdict(diff, tolerance, stepped=stepped).as_dict(),
            "also_compared": also}


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

