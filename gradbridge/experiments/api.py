"""The experiment API: an experiment is ``fn(be, **settings)`` returning named outputs.

Its keyword-only parameters with defaults are its settings (each one's type is its default's);
``@experiment(...)`` optionally adds metadata. Without a hand-written reference, the same
function run on NumPy float64 is the reference. Built-in and user experiments are the same kind
of object, so the runner, report and plots never need to know which one they hold.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from gradbridge.core.backend import Backend, InvalidArgument, invalid

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from gradbridge.experiments.record import Results

MARK = "__gradbridge_experiment__"
F = TypeVar("F", bound=Callable[..., Any])
Outputs = dict[str, np.ndarray]


class ExperimentError(InvalidArgument):
    """An experiment that cannot be loaded or used as written: one ``error:`` line, exit 2."""


@dataclass(frozen=True)
class Tolerances:
    """Largest normwise relative difference from the reference that still counts as agreement.

    float64: rounding only (~1e-16 per operation), so 1e-10 leaves room for other summation
    orders and nothing else. float32: ~6e-8 per rounding, amplified by cancellation and summed
    over steps; 1e-4 bounds that for trajectories of a few hundred steps, yet an operation off
    by one part in a thousand fails by a factor of ten.
    """

    float32: float = 1e-4
    float64: float = 1e-10

    def __post_init__(self) -> None:
        for dtype in ("float32", "float64"):
            value = getattr(self, dtype)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise invalid(f"tolerance.{dtype}", value,
                              "a relative difference between 0 and 1, such as 1e-4")

    def for_dtype(self, dtype: str) -> float:
        return float(self.float64 if dtype == "float64" else self.float32)


def experiment(fn: F | None = None, *, description: str = "",
               tolerances: Mapping[str, float] | None = None, series: Sequence[str] = (),
               reference: Callable[..., Mapping[str, Any]] | None = None,
               step: str = "step", compared: bool = True, repeats: int = 3,
               alternates: Mapping[str, Callable[..., Mapping[str, Any]]] | None = None,
               seeds: Mapping[str, str] | None = None,
               check: Callable[..., None] | None = None,
               figures: Mapping[str, Callable[[Results, str], Figure | None]] | None = None,
               section: Callable[[Results, str], list[str]] | None = None,
               files: Callable[[Results, str, Path], list[Path]] | None = None) -> Any:
    """Mark ``fn(be, **settings)`` as an experiment and describe it; returns ``fn`` unchanged.

    ``series``: outputs whose first axis is the step (compared step by step, called ``step``).
    ``reference(**settings)``: host outputs to compare with (default: ``fn`` on NumPy float64).
    ``repeats``: timed calls after the first one, which pays compilation. The remaining options
    serve experiments that measure rather than compare (``compared=False``), second references
    shown beside the verdict (``alternates``), the settings that are seeds (with what they draw),
    a range ``check(**settings)`` run before anything, and extra figures, a report section and
    files drawn from the results.
    """
    unknown = set(tolerances or {}) - {"float32", "float64"}
    if unknown:
        raise InvalidArgument(f"experiment(tolerances=...) has unknown dtype "
                              f"{', '.join(map(repr, sorted(unknown)))}; give float32 and/or "
                              "float64")
    if isinstance(series, str):
        series = [series]  # one name, not its letters
    meta = dict(description=description, tolerances=Tolerances(**(tolerances or {})),
                series=tuple(series), reference=reference, step=step, compared=compared,
                repeats=repeats, alternates=dict(alternates or {}), seeds=dict(seeds or {}),
                check=check, figures=dict(figures or {}), section=section, files=files)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0:
        raise invalid("experiment(repeats)", repeats, "a whole number >= 0")

    def mark(function: F) -> F:
        setattr(function, MARK, meta)
        return function

    return mark if fn is None else mark(fn)


# ------------------------------------------------------------------------ settings

SETTING_TYPES = (bool, int, float, str)


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    element = "integers" if all(isinstance(v, int) for v in default) else "numbers"
    return f"a list of {element}"


def _setting_type(default: Any) -> bool:
    if isinstance(default, SETTING_TYPES):
        return True
    return isinstance(default, list | tuple) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in default)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Experiment:
    """One experiment: its function, its settings' defaults and everything ``@experiment`` adds."""

    name: str
    fn: Callable[..., Mapping[str, Any]]
    where: str  # the file or module it was loaded from, for messages
    defaults: Mapping[str, Any]
    description: str = ""
    tolerances: Tolerances = field(default_factory=Tolerances)
    series: tuple[str, ...] = ()
    reference: Callable[..., Mapping[str, Any]] | None = None
    step: str = "step"
    compared: bool = True
    repeats: int = 3
    alternates: Mapping[str, Callable[..., Mapping[str, Any]]] = field(default_factory=dict)
    seeds: Mapping[str, str] = field(default_factory=dict)
    check: Callable[..., None] | None = None
    figures: Mapping[str, Callable[[Results, str], Figure | None]] = field(default_factory=dict)
    section: Callable[[Results, str], list[str]] | None = None
    files: Callable[[Results, str, Path], list[Path]] | None = None

    @classmethod
    def from_function(cls, fn: Any, name: str, where: str) -> Experiment:
        """Read an experiment's settings from ``fn``'s signature; a wrong one is an error."""
        def wrong(problem: str) -> ExperimentError:
            return ExperimentError(
                f"{where}: {name} is not an experiment: {problem}; write it as "
                f"def {name}(be, *, steps: int = 100, ...) returning a dict of outputs")

        if not callable(fn):
            raise wrong(f"it is a {type(fn).__name__}, not a function")
        try:
            parameters = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError) as exc:
            raise wrong(f"its signature cannot be read ({exc})") from exc
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if not parameters or parameters[0].kind not in positional:
            raise wrong("it must take the backend as its first positional parameter")
        defaults = {}
        for p in parameters[1:]:
            if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default is p.empty:
                raise wrong(f"parameter {p.name!r} must be keyword-only with a default "
                            "(put it after '*,')")
            if not _setting_type(p.default):
                raise wrong(f"setting {p.name!r} has default {p.default!r}; settings are "
                            "numbers, strings, booleans or lists of numbers")
            defaults[p.name] = p.default
        return cls(name, fn, where, defaults, **getattr(fn, MARK, {}))

    # ------------------------------------------------------------------- settings

    def describe_settings(self) -> str:
        return ", ".join(f"{k} ({_kind(v)}, default {_jsonable(v)!r})"
                         for k, v in self.defaults.items()) or "none"

    def settings(self, given: Mapping[str, Any], *, where: str = "",
                 text: bool = False) -> dict[str, Any]:
        """Defaults updated with ``given`` (JSON-ready); ``text`` values are parsed from strings.

        An unknown or ill-typed setting is an error naming it and listing the valid ones.
        """
        source = f" ({where})" if where else ""
        values = {k: _jsonable(v) for k, v in self.defaults.items()}
        for key, value in given.items():
            if key not in self.defaults:
                raise InvalidArgument(f"unknown setting {key!r} of experiment {self.name}"
                                      f"{source}; its settings: {self.describe_settings()}")
            default = self.defaults[key]
            try:
                values[key] = _jsonable(_parse(value, default) if text else _typed(value, default))
            except (TypeError, ValueError):
                raise InvalidArgument(
                    f"{self.name}.{key} must be {_kind(default)}; got {value!r}{source}; its "
                    f"settings: {self.describe_settings()}") from None
        if self.check is not None:
            self.check(**self.arguments(values))
        return values

    def arguments(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Settings as the function takes them: tuples where the default is a tuple."""
        return {k: tuple(v) if isinstance(self.defaults[k], tuple) else v
                for k, v in settings.items()}

    # -------------------------------------------------------------------- running

    @functools.cached_property
    def source_file(self) -> str | None:
        try:
            return inspect.getsourcefile(self.fn)
        except TypeError:  # a builtin or C function: no source
            return None

    @functools.cached_property
    def digest(self) -> str:
        """A digest of the experiment's source file: a run made by other code is redone."""
        if self.source_file is None:
            return ""
        try:
            with open(self.source_file, "rb") as handle:
                return hashlib.sha256(handle.read()).hexdigest()[:16]
        except OSError:
            return ""

    def failure(self, exc: BaseException) -> str:
        """'ZeroDivisionError: division by zero (spring.py:12)': what was raised, and the last
        line of the experiment's own file that it passed through."""
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if f.filename == self.source_file]
        where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
        return f"{type(exc).__name__}: {exc}{where}"

    def run(self, be: Backend, settings: Mapping[str, Any]) -> Outputs:
        """The outputs of one run, on the host in float64."""
        return self._host(self.fn(be, **self.arguments(settings)), f"{self.name}()", be)

    def reference_outputs(self, settings: Mapping[str, Any]) -> Outputs:
        """The hand-written reference, else this function on NumPy float64; without one
        nothing can be compared, so its failure is an ExperimentError."""
        from gradbridge.config import get_backend

        try:
            if self.reference is not None:
                return self._host(self.reference(**self.arguments(settings)),
                                  f"the reference of {self.name}", None)
            return self.run(get_backend("numpy", device="cpu", dtype="float64"), settings)
        except ExperimentError:
            raise
        except Exception as exc:  # the user's code raised: say what and where, in one line
            raise ExperimentError(f"{self.where}: the reference run of {self.name} (NumPy "
                                  f"float64) raised {self.failure(exc)}") from exc

    def alternate_outputs(self, settings: Mapping[str, Any]) -> dict[str, Outputs]:
        return {label: self._host(fn(**self.arguments(settings)), f"{label} of {self.name}",
                                  None) for label, fn in self.alternates.items()}

    def _host(self, result: Any, what: str, be: Backend | None) -> Outputs:
        """Check that ``result`` maps names to arrays or numbers; move them to host float64."""
        if not isinstance(result, Mapping) or not result:
            got = "an empty mapping" if isinstance(result, Mapping) else (
                f"a {type(result).__name__}")
            raise ExperimentError(f"{self.where}: {what} returned {got}, not a mapping of "
                                  "output names to arrays or numbers; return e.g. "
                                  "{'x': x, 'energy': energies}")
        outputs = {}
        for name, value in result.items():
            try:
                array = np.asarray(_to_host(value, be), dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ExperimentError(f"{self.where}: output {name!r} of {what} is not an array "
                                      f"or number ({type(value).__name__}: {exc})") from exc
            if name in self.series and array.ndim == 0:
                raise ExperimentError(f"{self.where}: output {name!r} of {what} is a series "
                                      "but has no step axis; return one value per step")
            outputs[str(name)] = array
        missing = [s for s in self.series if s not in outputs]
        if missing:
            raise ExperimentError(f"{self.where}: {what} returned no {', '.join(missing)}, "
                                  f"named as series; it returned {', '.join(outputs)}")
        return outputs


def _to_host(value: Any, be: Backend | None) -> Any:
    """Numbers and NumPy arrays as they are, a backend array through ``to_numpy``, lists of
    either element by element."""
    if isinstance(value, list | tuple):
        return [_to_host(v, be) for v in value]
    if be is None or isinstance(value, int | float | np.ndarray | np.generic):
        return value
    return be.to_numpy(value)


def _typed(value: Any, default: Any) -> Any:
    """A setting from a typed source (TOML, Python), of its default's type; else ValueError."""
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
        raise ValueError
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value)
        raise ValueError
    if isinstance(default, float):
        if isinstance(value, int | float):
            return float(value)
        raise ValueError
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ValueError
    if not isinstance(value, list | tuple):
        raise ValueError
    element: Any = 0 if all(isinstance(v, int) for v in default) else 0.0
    return [_typed(v, element) for v in value]


def _parse(text: Any, default: Any) -> Any:
    """A setting given as text (``--set``), of its default's type; else ValueError."""
    text = str(text).strip()
    if isinstance(default, bool):
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        return words[text.lower()] if text.lower() in words else _typed(text, default)
    if isinstance(default, int | float):
        return _typed(float(text) if isinstance(default, float) or not text.lstrip("-+")
                      .isdigit() else int(text), default)
    if isinstance(default, str):
        return text
    element: Any = 0 if all(isinstance(v, int) for v in default) else 0.0
    return [_parse(part, element) for part in text.split(",") if part.strip()]
