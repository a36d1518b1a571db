"""The typed records of a comparison: one :class:`RunRecord` per run, and :class:`Results`.

``runs/<cell>.json`` holds one run record and ``results.json`` the whole document; both are
these dataclasses' ``as_dict()``, so the schema is written down here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradbridge.experiments.api import Experiment

STATUSES = ("ok", "skipped", "error")


@dataclass
class RunRecord:
    """One run of one experiment on one backend, device and dtype.

    ``outputs`` are host values as nested lists; ``time`` holds the first call's seconds
    (``first_s``, compilation included), the median of the repeats (``run_s``, with
    ``run_s_quantiles`` [min, q1, median, q3, max]) and ``compile_s``, the first call's excess
    over the repeats (None when within their spread). ``differences`` maps each compared output
    to its per-step ``abs`` / ``rel`` differences; ``explanation`` is where a difference is
    born, when that was asked for. ``source`` is a digest of the experiment's file, so that a
    resume redoes the runs made by code that has changed since.
    """

    experiment: str
    backend: str
    device: str
    dtype: str
    status: str = "ok"
    reason: str = ""
    started: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # digest of the experiment's source file when it ran
    outputs: dict[str, Any] = field(default_factory=dict)
    time: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    differences: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    verdict: dict[str, Any] | None = None
    also_compared: dict[str, dict[str, float]] = field(default_factory=dict)
    explanation: str | None = None

    @property
    def cell(self) -> tuple[str, str, str, str]:
        return (self.experiment, self.backend, self.device, self.dtype)

    @property
    def where(self) -> str:
        return f"{self.experiment} on {self.backend} {self.device} {self.dtype}"

    @property
    def label(self) -> str:
        return f"{self.backend} {self.device} {self.dtype}"

    @property
    def agrees(self) -> bool | None:
        """True or False when compared with a reference, None when not compared."""
        return None if self.verdict is None else bool(self.verdict["agrees"])

    def output(self, name: str) -> np.ndarray:
        return np.asarray(self.outputs[name], dtype=float)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """A record read back from JSON; a mapping that is not one is a ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown or data.get("status") not in STATUSES:
            raise ValueError(f"not a run record (keys {sorted(unknown)}, status "
                             f"{data.get('status')!r})")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"not a run record: {exc}") from exc


@dataclass
class Results:
    """Everything a comparison produced: its grid, references and runs, in grid order.

    ``experiments`` are the loaded experiments (for their metadata: series, steps, figures);
    they are described in ``as_dict()`` but not stored.
    """

    grid: dict[str, Any]
    experiments: dict[str, Experiment]
    references: dict[str, dict[str, Any]] = field(default_factory=dict)
    alternates: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def backends(self) -> list[str]:
        return list(self.grid["backends"])

    @property
    def backends_named(self) -> bool:
        return bool(self.grid.get("backends_named", False))

    def tolerance(self, experiment: str, dtype: str) -> float:
        return self.experiments[experiment].tolerances.for_dtype(dtype)

    def ok(self, experiment: str | None = None) -> list[RunRecord]:
        """The finished runs (of one experiment if given)."""
        return [r for r in self.runs if r.status == "ok"
                and (experiment is None or r.experiment == experiment)]

    def reference(self, experiment: str, output: str) -> np.ndarray | None:
        values = self.references.get(experiment, {}).get(output)
        return None if values is None else np.asarray(values, dtype=float)

    def settings(self, experiment: str) -> dict[str, Any]:
        return dict(self.grid["settings"].get(experiment, {}))

    def missing_cells(self) -> int:
        grid = self.grid
        total = (len(grid["experiments"]) * len(grid["backends"]) * len(grid["devices"])
                 * len(grid["dtypes"]))
        return total - len(self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": 2,
            "grid": self.grid,
            "experiments": {name: {"description": e.description, "source": e.where,
                                   "series": list(e.series), "step": e.step,
                                   "compared": e.compared,
                                   "tolerance": dataclasses.asdict(e.tolerances)}
                            for name, e in self.experiments.items()},
            "reference": self.references,
            "alternates": self.alternates,
            "runs": [run.as_dict() for run in self.runs],
        }
