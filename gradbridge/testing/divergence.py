"""Where two backends start to disagree: the first statement whose result differs.

:func:`explain` runs an experiment eagerly on both backends under ``sys.settrace``, tracing only
frames whose code lives in the experiment's own file. After each statement it copies to the host
the locals that statement changed (rebound, or written in place like ``losses.append``), then
walks the two records side by side and names the first statement whose result differs beyond
tolerance while every value recorded before it agreed: where a difference is born.
"""

from __future__ import annotations

import ast
import inspect
import io
import operator
import sys
import tokenize
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import numpy as np

from gradbridge.core.backend import InvalidArgument
from gradbridge.testing.assertions import DEFAULT_RTOL

__all__ = ["Divergence", "explain"]

RETURN = "return"
"""``Divergence.variable`` for a function's return value."""
EXPRESSION = "<expression>"
"""``Divergence.variable`` for the arguments a statement passes to a function of the file."""
CONTROL_FLOW = "<control flow>"
"""``Divergence.variable`` when the two sides run different statements after this one."""

CARRY_FACTOR = 4.0
"""A result whose largest absolute difference is within this factor of its operands' is carried,
not born: ``r = p - y`` with ``p`` off by rounding is off by as much (relatively far more, when
``p`` and ``y`` nearly cancel), and that is the operands' difference, not this statement's."""

TINY = float(np.finfo(np.float64).tiny)
OPAQUE = object()
"""A value that is not compared (a function, a backend, a traced value inside ``grad``)."""
NUMBERS = (bool, int, float, complex, np.generic)
MAX_DEPTH = 8
COMPREHENSIONS = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})
"""Frames not traced: their result shows in the statement that holds them (as from Python 3.12,
where comprehensions run in their caller's frame)."""


@dataclass(frozen=True)
class Divergence:
    """The statement where a backend first computes something else than the reference.

    Where the two sides part ways instead (``variable`` is ``"<control flow>"``), the statement
    both ran last, and the largest difference among the values before it.
    """

    file: str
    line: int
    source: str
    variable: str
    execution: int
    difference: float
    tolerance: float
    backend: str
    reference: str
    absolute: bool = False
    """``difference`` is absolute: the reference's values are zero (or not floating), so no
    relative one exists."""

    def __str__(self) -> str:
        where = (f"{self.file}:{self.line} ({_ordinal(self.execution)} execution) "
                 f"`{self.source}`")
        sides = f"between {self.backend} and {self.reference}"
        if self.variable == CONTROL_FLOW:
            return (f"{where}: the control flow differs after this statement {sides}\n"
                    f"  (the values before it differ by at most {self.difference:.1e}, "
                    f"tolerance {self.tolerance:.2g})")
        what = {RETURN: "the returned value", EXPRESSION: "an argument it passes"}.get(
            self.variable, self.variable)
        kind = " (absolute: the reference is 0)" if self.absolute else ""
        return (f"{where}: {what} differs by {self.difference:.1e}{kind} "
                f"(tolerance {self.tolerance:.2g}) {sides}")


def explain(fn: Callable[..., Any], backend: Any, reference: Any = None, *,
            settings: Mapping[str, Any] | None = None,
            rtol: float | None = None) -> Divergence | None:
    """Run ``fn(be, **settings)`` eagerly on ``backend`` and ``reference`` (default NumPy
    float64) and return where their values first differ beyond ``rtol``, or None if nowhere.

    ``rtol`` defaults from the less precise of the two backends' dtypes (DEFAULT_RTOL). Only
    the lines of ``fn``'s file are traced; values inside ``grad`` (traced) are not compared.
    """
    import gradbridge as gb

    be = gb.get_backend(backend) if isinstance(backend, str) else backend
    ref = (gb.get_backend("numpy", dtype="float64") if reference is None
           else gb.get_backend(reference) if isinstance(reference, str) else reference)
    file = _source_file(fn)
    statements = Statements(file)
    tolerance = rtol if rtol is not None else max(DEFAULT_RTOL.get(be.dtype, 0.0),
                                                  DEFAULT_RTOL.get(ref.dtype, 0.0))
    kwargs = dict(settings or {})
    expected = Recorder(ref, file, statements).run(fn, kwargs)
    actual = Recorder(be, file, statements).run(fn, kwargs)
    found = first_difference(expected, actual, statements, tolerance, rtol is None)
    if found is None:
        return None
    line, execution, variable, difference, exceeded, absolute = found
    return Divergence(file, line, statements.text(line), variable, execution, difference,
                      exceeded, _label(be), _label(ref), absolute)


# ------------------------------------------------------------------------- the source


class Statements:
    """The statements of a source file: which one each line belongs to, its text, and the
    names it reads (a compound statement's header only: ``for i in range(n):``)."""

    def __init__(self, file: str) -> None:
        source = Path(file).read_text(encoding="utf-8")
        lines = source.splitlines()
        self.first: dict[int, int] = {}
        self.texts: dict[int, str] = {}
        self.names: dict[int, frozenset[str]] = {}
        for node in ast.walk(ast.parse(source, file)):  # outer statements before inner ones
            if not isinstance(node, ast.stmt):
                continue
            body = getattr(node, "body", None)
            compound = isinstance(body, list) and bool(body) and isinstance(body[0], ast.stmt)
            last = (body[0].lineno - 1 if compound and body is not None
                    else node.end_lineno or node.lineno)
            decorators = getattr(node, "decorator_list", [])
            start = min([node.lineno, *(d.lineno for d in decorators)])
            for line in range(start, max(last, node.lineno) + 1):
                self.first[line] = node.lineno
            segment = ("\n".join(lines[node.lineno - 1:max(last, node.lineno)]) if compound
                       else ast.get_source_segment(source, node) or lines[node.lineno - 1])
            self.texts[node.lineno] = _one_line(segment)
            self.names[node.lineno] = frozenset(_names_read(node))

    def statement(self, line: int) -> int:
        """The first line of the statement that ``line`` belongs to."""
        return self.first.get(line, line)

    def text(self, line: int) -> str:
        return self.texts.get(line, "")

    def reads(self, line: int) -> frozenset[str]:
        return self.names.get(line, frozenset())


BODIES = frozenset({"body", "orelse", "finalbody", "handlers", "cases"})


def _one_line(code: str) -> str:
    """A statement's code on one line, without its comments."""
    parts = code.splitlines()
    try:
        for token in tokenize.generate_tokens(io.StringIO(code + "\n").readline):
            if token.type == tokenize.COMMENT:
                row, column = token.start
                parts[row - 1] = parts[row - 1][:column]
    except (tokenize.TokenError, IndentationError):  # a compound statement's header alone
        pass
    return " ".join(part.strip() for part in parts if part.strip())


def _names_read(statement: ast.stmt) -> Iterator[str]:
    """Names the statement loads, outside the bodies of a compound statement (``x += 1``
    loads ``x`` too)."""
    if isinstance(statement, ast.AugAssign) and isinstance(statement.target, ast.Name):
        yield statement.target.id
    for name, value in ast.iter_fields(statement):
        if name in BODIES:
            continue
        for part in value if isinstance(value, list) else [value]:
            if isinstance(part, ast.AST):
                yield from (node.id for node in ast.walk(part)
                            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load))


def _source_file(fn: Callable[..., Any]) -> str:
    code = getattr(inspect.unwrap(fn), "__code__", None)
    file = getattr(code, "co_filename", "<unknown>")
    if file.startswith("<") or not Path(file).is_file():
        raise InvalidArgument(
            f"explain: {getattr(fn, '__qualname__', fn)!r} is not defined in a source file "
            f"({file}); define the experiment in a .py file so its lines can be named")
    return str(file)


# ---------------------------------------------------------------------- recording


@dataclass
class Event:
    """One executed statement (or a call's arguments) and the values it changed, on the host."""

    frame: int
    line: int
    execution: int
    values: dict[str, Any]


@dataclass
class Snapshot:
    """A local as the last statement left it: the object, its stamp and its host copy."""

    obj: Any
    stamp: Any
    host: Any


@dataclass
class FrameState:
    serial: int
    snapshot: dict[str, Snapshot] = field(default_factory=dict)
    line: int = 0  # the statement running, 0 before the first
    execution: int = 0
    offset: int = -1  # bytecode offset where it started: a jump back is a new execution


class Recorder:
    """Runs an experiment under ``sys.settrace`` and keeps an Event per executed statement."""

    def __init__(self, be: Any, file: str, statements: Statements) -> None:
        self.be, self.file, self.statements = be, file, statements
        self.events: list[Event] = []
        self.executions: Counter[tuple[CodeType, int]] = Counter()  # by function and line
        self.calls: Counter[CodeType] = Counter()
        self.frames: dict[FrameType, FrameState] = {}
        self.entered = 0
        self.hosted: dict[int, Snapshot] = {}  # id -> container items copied so far

    def run(self, fn: Callable[..., Any], settings: dict[str, Any]) -> list[Event]:
        previous = sys.gettrace()
        with self.be.scope(), self.be.eager():
            sys.settrace(self.on_call)
            try:
                fn(self.be, **settings)
            finally:
                sys.settrace(previous)
        return self.events

    def on_call(self, frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        if event != "call" or code.co_filename != self.file or code.co_name in COMPREHENSIONS:
            return None
        state = FrameState(self.entered)
        self.entered += 1
        self.calls[frame.f_code] += 1
        arguments: dict[str, Any] = {}
        for name, obj in frame.f_locals.items():
            state.snapshot[name] = snapshot = Snapshot(obj, _stamp(obj), self.host(obj))
            if snapshot.host is not OPAQUE:
                arguments[name] = snapshot.host
        caller = self.frames.get(frame.f_back) if frame.f_back is not None else None
        if caller is not None and caller.line:  # the arguments are the calling statement's
            self.events.append(Event(caller.serial, caller.line, caller.execution,
                                     {EXPRESSION: arguments} if arguments else {}))
        else:
            self.events.append(Event(state.serial,
                                     self.statements.statement(frame.f_code.co_firstlineno),
                                     self.calls[frame.f_code], arguments))
        self.frames[frame] = state
        return self.on_event

    def on_event(self, frame: FrameType, event: str, arg: Any) -> Any:
        state = self.frames.get(frame)
        if state is None:
            return None
        if event == "line":
            line = self.statements.statement(frame.f_lineno)
            if line == state.line and frame.f_lasti > state.offset:
                return self.on_event  # another line of the statement that is running
            self.finish(frame, state)
            self.executions[frame.f_code, line] += 1  # (a comprehension on it counts apart)
            state.line, state.execution = line, self.executions[frame.f_code, line]
            state.offset = frame.f_lasti
        elif event == "return":
            self.finish(frame, state, arg)
            del self.frames[frame]
        return self.on_event

    def finish(self, frame: FrameType, state: FrameState, returned: Any = OPAQUE) -> None:
        """Record the statement that just ran: the locals it rebound or changed in place."""
        if not state.line:
            return
        changed: dict[str, Any] = {}
        for name, obj in frame.f_locals.items():
            before = state.snapshot.get(name)
            stamp = _stamp(obj)
            if before is not None and obj is before.obj:
                if _kept(obj, stamp, before):
                    continue
                host = self.grown(obj, stamp, before)
            else:
                host = self.host(obj)
            state.snapshot[name] = Snapshot(obj, stamp, host)
            if host is not OPAQUE:
                changed[name] = host
        if returned is not OPAQUE:
            host = self.host(returned)
            if host is not OPAQUE:
                changed[RETURN] = host
        self.events.append(Event(state.serial, state.line, state.execution, changed))

    def grown(self, obj: Any, stamp: Any, before: Snapshot) -> Any:
        """The host copy of a list that only grew since ``before`` (``losses.append``): the
        old items' copies and copies of the new ones; else a fresh copy of everything."""
        old, new = before.stamp, stamp
        if (type(obj) is list and type(before.host) is list and not old[2] and not new[2]
                and new[1][:len(old[1])] == old[1]):
            return before.host + [self.host(item, 1) for item in obj[len(old[1]):]]
        return self.host(obj)

    def host(self, obj: Any, depth: int = 0) -> Any:
        """A NumPy copy of an array or number, lists/tuples/dicts of them kept; OPAQUE else."""
        if type(obj) is np.ndarray:  # copied every time: it may have been written into
            return obj.copy() if obj.dtype.kind in "biufc" else OPAQUE
        if depth < MAX_DEPTH and isinstance(obj, (list, tuple)):
            items = [self.host(item, depth + 1) for item in obj]
            return items if any(item is not OPAQUE for item in items) else OPAQUE
        if depth < MAX_DEPTH and isinstance(obj, dict):
            entries = {key: self.host(item, depth + 1) for key, item in obj.items()}
            return entries if any(item is not OPAQUE for item in entries.values()) else OPAQUE
        number = isinstance(obj, NUMBERS)
        if not number and (isinstance(obj, type) or not hasattr(obj, "shape")
                           or not hasattr(obj, "dtype")):
            return OPAQUE
        stamp, seen = _stamp(obj), self.hosted.get(id(obj))
        if seen is not None and seen.obj is obj and seen.stamp == stamp:
            return seen.host
        try:
            value = np.array(obj if number else self.be.to_numpy(obj))
        except Exception:  # a traced value inside grad refuses: it is not compared
            return OPAQUE
        host = value if value.dtype.kind in "biufc" else OPAQUE
        if depth:  # an item of a container (a list of losses): not copied again at every line
            self.hosted[id(obj)] = Snapshot(obj, stamp, host)
        return host


def _stamp(obj: Any, depth: int = 0) -> Any:
    """What changes when ``obj`` is changed in place: which objects a container holds (and
    what its inner containers hold), a torch tensor's ``_version`` (its count of in-place
    writes); otherwise only the object's identity. (Writes into an array a container holds are
    not seen: looking at every item at every line would cost a long loop too much.)"""
    if depth < MAX_DEPTH and isinstance(obj, (list, tuple, dict)):
        items = obj.values() if isinstance(obj, dict) else obj
        inner = tuple(_stamp(item, depth + 1) for item in items
                      if isinstance(item, (list, tuple, dict)))
        return tuple(obj) if isinstance(obj, dict) else (), tuple(map(id, items)), inner
    return id(obj), getattr(obj, "_version", None) if hasattr(obj, "shape") else None


def _kept(obj: Any, stamp: Any, before: Snapshot) -> bool:
    """Whether the object a local still names holds what it held at ``before``: a NumPy
    array's values are compared (anything may have written into it), others' stamps."""
    if type(obj) is np.ndarray:
        host = before.host
        return isinstance(host, np.ndarray) and obj.shape == host.shape and bool(
            np.array_equal(obj, host, equal_nan=obj.dtype.kind in "fc"))
    return bool(stamp == before.stamp)


# ---------------------------------------------------------------------- comparing


Found = tuple[int, int, str, float, float, bool]
"""(line, execution, variable, difference, tolerance exceeded, difference is absolute)."""

REALIGN_WINDOW = 256
"""How many statements ahead a branch that only one side runs may rejoin the other's."""


def first_difference(expected: list[Event], actual: list[Event], statements: Statements,
                     tolerance: float, by_dtype: bool) -> Found | None:
    """The first value born different (see :class:`Walk`), or the statement after which the
    two sides run different statements for a reason the walk cannot step over; None if none.

    ``by_dtype``: the tolerance also grows to a less precise dtype's among the values compared.
    """
    walk = Walk(statements, tolerance, by_dtype)
    i = j = 0
    while i < len(expected) and j < len(actual):
        want, got = expected[i], actual[j]
        if (want.line, want.execution) == (got.line, got.execution):
            walk.frames.setdefault(got.frame, want.frame)
            found = walk.matched(want, got)
            i, j = i + 1, j + 1
        else:  # a branch one side runs and the other does not
            steered = walk.steered(expected[i - 1])  # (both sides begin with fn's call)
            skip = None if steered else _rejoin(expected, actual, i, j)
            if skip is None:
                return _control_flow(expected[i - 1], walk.worst, tolerance)
            found = walk.extra(expected[i - 1], expected[i:i + skip[0]], actual[j:j + skip[1]])
            i, j = i + skip[0], j + skip[1]
        if found is not None:
            return found
    if i < len(expected) or j < len(actual):
        return _control_flow(expected[i - 1], walk.worst, tolerance)
    return None


class Walk:
    """The two sides' current values, compared after every statement.

    A value is *born* different at a statement when it differs beyond the tolerance relative to
    itself, its largest absolute difference exceeds the tolerance relative to the largest value
    the statement reads (rounding of a sum or of a difference scales with its terms), and it is
    more than CARRY_FACTOR times the largest absolute difference among the values read (then
    the statement only carries it).
    """

    def __init__(self, statements: Statements, tolerance: float, by_dtype: bool) -> None:
        self.statements, self.tolerance, self.by_dtype = statements, tolerance, by_dtype
        self.current: tuple[dict[tuple[int, str], Any], dict[tuple[int, str], Any]] = ({}, {})
        self.differences: dict[tuple[int, str], float] = {}  # largest |a - r|
        self.magnitudes: dict[tuple[int, str], float] = {}  # largest |r|
        self.frames: dict[int, int] = {}  # the backend's frame serials -> the reference's
        self.worst = 0.0
        self.leaves: dict[tuple[int, int], tuple[Any, Any, tuple[float, float, float, float]]] = {}
        self.series: dict[tuple[int, str], tuple[list[Any], list[Any], list[float]]] = {}

    def matched(self, want: Event, got: Event) -> Found | None:
        """The same statement ran on both sides: compare what it changed on both."""
        for name, value in want.values.items():
            self.current[0][(want.frame, name)] = value
        for name, value in got.values.items():
            self.current[1][(want.frame, name)] = value
        names = [name for name in want.values if name in got.values]
        return self.compare(want, want.frame, names)

    def extra(self, split: Event, expected: list[Event], actual: list[Event]) -> Found | None:
        """Statements only one side ran (a branch such as ``if be.name == "torch":``) after
        ``split``: where the two sides meet again, compare what either changed. A difference in
        a value the backend's branch assigned is born at the statement of that branch that
        assigned it last; one the reference alone assigned is the control flow's."""
        for event in expected:
            for name, value in event.values.items():
                self.current[0][(event.frame, name)] = value
        assigned: dict[tuple[int, str], Event] = {}
        for event in actual:
            frame = self.frames.get(event.frame)
            if frame is None:  # a call made inside the branch: its caller's statement shows it
                continue
            for name, value in event.values.items():
                self.current[1][(frame, name)] = value
                assigned[(frame, name)] = event
        for (frame, name), event in assigned.items():
            if found := self.compare(event, frame, [name]):
                return found
        only_reference = [(event, name) for event in expected for name in event.values
                          if (event.frame, name) not in assigned]
        for event, name in only_reference:
            if self.compare(event, event.frame, [name]):
                return _control_flow(split, self.worst, self.tolerance)
        return None

    def compare(self, event: Event, frame: int, names: list[str]) -> Found | None:
        operands = [(frame, name) for name in self.statements.reads(event.line)]
        carried = max((self.differences.get(key, 0.0) for key in operands), default=0.0)
        size = max((self.magnitudes.get(key, 0.0) for key in operands), default=0.0)
        for name in names:
            key = (frame, name)
            if key not in self.current[0] or key not in self.current[1]:
                continue
            value, reference = self.current[1][key], self.current[0][key]
            relative, absolute, magnitude, allowed = (
                self.grown(key, value, reference) if type(value) is type(reference) is list
                else self.difference(value, reference))
            self.differences[key], self.magnitudes[key] = absolute, magnitude
            if (relative > allowed and absolute > allowed * size
                    and absolute > CARRY_FACTOR * carried):
                if magnitude == 0.0:  # nothing to be relative to: say how far, absolutely
                    return event.line, event.execution, name, absolute, allowed, True
                return event.line, event.execution, name, relative, allowed, False
            self.worst = max(self.worst, relative)
        return None

    def steered(self, event: Event) -> bool:
        """Whether the statement reads a value that differs at all between the two sides (a
        branch it takes differently is then the values' doing, not a backend-specific path)."""
        return any(self.differences.get((event.frame, name), 0.0) > 0.0
                   for name in self.statements.reads(event.line))

    def difference(self, value: Any, reference: Any) -> tuple[float, float, float, float]:
        """Over the leaves of two host trees: the largest normwise relative difference, the
        largest absolute one, the largest floating reference magnitude and the tolerance
        (differences are infinite when the structures differ)."""
        found = [0.0, 0.0, 0.0, self.tolerance]
        if not self.gather(value, reference, found):
            return float("inf"), float("inf"), 0.0, self.tolerance
        return found[0], found[1], found[2], found[3]

    def grown(self, key: tuple[int, str], value: Any, reference: Any
              ) -> tuple[float, float, float, float]:
        """:meth:`difference` of two lists that may have only grown since they were compared
        last under ``key`` (a series of losses): only their new items are compared."""
        before = self.series.get(key)
        found, start = [0.0, 0.0, 0.0, self.tolerance], 0
        if before is not None and len(value) == len(reference):
            old_value, old_reference, old_found = before
            start = len(old_value)
            if start <= len(value) and all(map(operator.is_, old_value, value)) and all(
                    map(operator.is_, old_reference, reference)):
                found = list(old_found)
            else:
                start = 0
        if len(value) != len(reference) or not all(
                self.gather(g, w, found) for g, w in zip(value[start:], reference[start:],
                                                         strict=True)):
            return float("inf"), float("inf"), 0.0, self.tolerance
        self.series[key] = value, reference, found
        return found[0], found[1], found[2], found[3]

    def gather(self, got: Any, want: Any, found: list[float]) -> bool:
        """Fold the leaves' comparisons into ``found``; False if the structures differ."""
        if type(want) is list:
            return type(got) is list and len(got) == len(want) and all(
                self.gather(g, w, found) for g, w in zip(got, want, strict=True))
        if type(want) is dict:
            return type(got) is dict and got.keys() == want.keys() and all(
                self.gather(got[key], item, found) for key, item in want.items())
        if got is OPAQUE or want is OPAQUE or type(got) is not np.ndarray:
            return type(got) is not list and type(got) is not dict
        seen = self.leaves.get((id(got), id(want)))  # a list's old items: compared already
        if seen is None or seen[0] is not got or seen[1] is not want:
            seen = self.leaves[(id(got), id(want))] = got, want, self.leaf(got, want)
        for index, number in enumerate(seen[2]):
            if number > found[index]:
                found[index] = number
        return True

    def leaf(self, got: np.ndarray, want: np.ndarray) -> tuple[float, float, float, float]:
        """:func:`_leaf_difference`, the magnitude kept for floating values only (counters and
        indices say nothing of rounding's scale), and the tolerance for these dtypes."""
        relative, absolute, magnitude = _leaf_difference(got, want)
        allowed = self.tolerance
        if self.by_dtype:
            allowed = max(allowed, DEFAULT_RTOL.get(got.dtype.name, 0.0),
                          DEFAULT_RTOL.get(want.dtype.name, 0.0))
        return relative, absolute, magnitude if want.dtype.kind in "fc" else 0.0, allowed


def _rejoin(expected: list[Event], actual: list[Event], i: int,
            j: int) -> tuple[int, int] | None:
    """The fewest statements (reference's, backend's) to step over from ``i`` and ``j`` until
    both sides run the same statement again; None if not within REALIGN_WINDOW."""
    keys = [(e.line, e.execution) for e in expected[i:i + REALIGN_WINDOW + 1]]
    other = [(e.line, e.execution) for e in actual[j:j + REALIGN_WINDOW + 1]]
    for total in range(1, REALIGN_WINDOW + 1):
        for skipped in range(total + 1):
            if skipped < len(keys) and total - skipped < len(other) and (
                    keys[skipped] == other[total - skipped]):
                return skipped, total - skipped
    return None


def _control_flow(last: Event, worst: float, tolerance: float) -> Found:
    """The statement both sides ran last before they went separate ways."""
    return last.line, last.execution, CONTROL_FLOW, worst, tolerance, False


def _leaf_difference(got: np.ndarray, want: np.ndarray) -> tuple[float, float, float]:
    """``||a - r|| / max(||r||, tiny)``, ``max |a - r|`` and ``max |r|`` over finite ``r``;
    equal infinities and NaN against NaN agree, NaN against a number differs infinitely."""
    wide = np.complex128 if "c" in (got.dtype.kind, want.dtype.kind) else np.float64
    a, r = got.astype(wide), want.astype(wide)
    finite = np.abs(np.where(np.isfinite(r), r, 0.0))
    magnitude = float(finite.max()) if finite.size else 0.0
    if got.shape != want.shape:
        return float("inf"), float("inf"), magnitude
    with np.errstate(invalid="ignore", over="ignore"):
        same = (a == r) | (np.isnan(a) & np.isnan(r))
        delta = np.where(same, 0.0, np.abs(a - r))
    delta = np.where(np.isnan(delta), np.inf, delta)
    if delta.size == 0 or not delta.any():
        return 0.0, 0.0, magnitude
    scale = float(np.linalg.norm(finite.ravel()))
    return float(np.linalg.norm(delta.ravel())) / max(scale, TINY), float(delta.max()), magnitude


def _label(be: Any) -> str:
    return f"{be.name}-{be.device}-{be.dtype}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
