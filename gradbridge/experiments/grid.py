"""What a comparison runs: the grid of experiments x backends x devices x dtypes, and each
experiment's settings, from command-line options or a TOML config file.

Experiments are found through :mod:`~gradbridge.experiments.loader` and are all alike here:
built-in or the user's own, none is named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradbridge.config import read_toml
from gradbridge.core.backend import (
    DTYPES,
    DeviceNotAvailable,
    InvalidArgument,
    normalize_device,
    normalize_dtype,
)
from gradbridge.experiments import loader
from gradbridge.experiments.api import Experiment, ExperimentError, Tolerances

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


# ------------------------------------------------------------------- comparing grids


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
