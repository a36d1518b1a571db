"""Run the Array API conformance suite on gradbridge's namespaces and the anchor namespaces.

    python conformance/run.py                      # every backend x dtype, plus the anchors
    python conformance/run.py --backends none      # the anchors only
    python conformance/run.py --backends numpy --dtypes float64 --no-anchors
    python conformance/run.py --differences        # the README's table, from the xfails file

Each run is one pytest process of the external suite (``../shared/array-api-tests``, version
2024.12, fft included) in a fresh scratch directory with a JSON report. The summary (counts,
seconds, gradbridge against the anchor of its framework) and each run's failing test ids go
to stdout and to ``--out``. Exit status 1 when a gradbridge test fails that
``conformance/xfails.txt`` does not list, or when a run errored (crash, collection error,
timeout, killed); the anchor comparison is reported only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
XFAILS = ROOT / "conformance" / "xfails.txt"
API_VERSION = "2024.12"
BACKENDS = ("numpy", "jax", "torch")
DTYPES = ("float32", "float64")
ANCHORS = {"numpy": "array_api_compat.numpy", "jax": "jax.numpy", "torch": "array_api_compat.torch"}
NOT_PASSING = ("failed", "error", "xfailed")
XFAILS_HEADER = """\
# Expected failures of gradbridge's namespaces in the Array API suite (conformance/run.py).
# Read by the suite's --xfails-file: one test id per line, exactly as pytest prints it (no
# trailing text); an id without "[...]" covers every parametrization of that test. Lines that
# start with "#" and blank lines are ignored, so each group's reason is the comment above it;
# "-- fails on:" ends a reason with where it failed when last updated. One file serves
# every backend x dtype; an entry that passes on some of them is an XPASS (reported, not an
# error), so a flaky test (hypothesis draws new examples each run) can be listed safely.
# Regenerate with `python conformance/run.py --update-xfails` (add --keep-xfails to collect
# over several runs); reasons written by hand (not starting with TODO) are kept.
"""


@dataclass(frozen=True)
class Target:
    """One namespace to test: a gradbridge backend in one dtype, or a framework's anchor."""

    framework: str
    dtype: str | None = None  # None for an anchor

    @property
    def anchor(self) -> bool:
        """Whether this is the reference namespace of its framework."""
        return self.dtype is None

    @property
    def label(self) -> str:
        """Short name used in the summary and in file names."""
        return f"anchor-{self.framework}" if self.anchor else f"{self.framework}-{self.dtype}"

    @property
    def namespace(self) -> str:
        """The namespace as the summary names it."""
        return ANCHORS[self.framework] if self.anchor else f"gradbridge {self.framework}"

    def module(self) -> str:
        """The suite's ARRAY_API_TESTS_MODULE: a module name, or exec code binding ``xp``."""
        if self.anchor:
            return self.namespace
        get = f'gb.get_backend("{self.framework}", dtype="{self.dtype}")'
        return f"exec('import gradbridge as gb; xp = {get}')"


@dataclass
class Result:
    """What one run of the suite produced."""

    target: Target
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)  # test id -> pytest outcome
    messages: dict[str, str] = field(default_factory=dict)  # test id -> first line of failure
    error: str | None = None  # why the run itself failed: crash, collection error, timeout

    def ids(self, *outcomes: str) -> list[str]:
        """Test ids whose outcome is one of ``outcomes``."""
        return [i for i, o in self.outcomes.items() if o in outcomes]

    @property
    def new_failures(self) -> list[str]:
        """Tests that failed or errored although the xfails file does not list them."""
        return [] if self.target.anchor else self.ids("failed", "error")

    @property
    def not_passing(self) -> list[str]:
        """Every test that did not pass (listed as expected failures or not)."""
        return self.ids(*NOT_PASSING)


def first_line(text: str | None) -> str:
    """The first non-empty line of a failure message, shortened for one summary line."""
    line = next((s.strip() for s in (text or "").splitlines() if s.strip()), "")
    return line[:160]


def crash_line(log: str) -> str:
    """The line of a pytest log that best says why it stopped: the last "E   ..." line."""
    lines = [s for s in log.splitlines() if s.strip()]
    errors = [s[1:].strip() for s in lines if s.startswith("E ")]
    return first_line((errors or lines or ["no output"])[-1])


def parse_report(target: Target, report: dict[str, Any], seconds: float) -> Result:
    """Turn a pytest-json-report document into a Result (collection errors make it errored)."""
    result = Result(target, seconds)
    for test in report.get("tests", []):
        result.outcomes[test["nodeid"]] = test["outcome"]
        stages = [test.get(p) or {} for p in ("setup", "call", "teardown")]
        found = [(s.get("crash") or {}).get("message") or s.get("longrepr") for s in stages]
        if test["outcome"] in NOT_PASSING and any(found):
            result.messages[test["nodeid"]] = first_line(next(m for m in found if m))
    result.counts = dict(Counter(result.outcomes.values()))
    broken = [c["nodeid"] or "<session>" for c in report.get("collectors", [])
              if c.get("outcome") == "failed"]
    if broken:
        result.error = f"collection error in {', '.join(broken[:3])}"
    elif report.get("exitcode", 0) not in (0, 1):
        result.error = f"pytest exit code {report['exitcode']}"
    elif not result.outcomes:
        result.error = "no tests ran"
    return result


def pytest_command(args: argparse.Namespace, target: Target, report: Path) -> list[str]:
    """The pytest command line for one run of the suite."""
    cmd = [sys.executable, "-m", "pytest", str(args.suite / "array_api_tests"),
           "-p", "no:cacheprovider", "-p", "no:gradbridge", "-q", "--no-header",
           "-o", f"timeout={args.test_timeout:g}",  # pytest-timeout: a hung test fails alone
           "--max-examples", str(args.max_examples), "--hypothesis-disable-deadline",
           "--json-report", f"--json-report-file={report}",
           "--json-report-omit", "keywords", "streams", "log", "traceback", "warnings"]
    if args.no_fft:
        cmd += ["--disable-extension", "fft"]
    if not target.anchor and args.xfails.exists():
        cmd += ["--xfails-file", str(args.xfails)]
    if args.derandomize:
        cmd.append("--hypothesis-derandomize")
    if args.k:
        cmd += ["-k", args.k]
    return cmd


def run_target(args: argparse.Namespace, target: Target) -> Result:
    """Run the suite on one namespace in a fresh scratch directory; failures become errors."""
    report, log = args.out / f"{target.label}.json", args.out / f"{target.label}.log"
    report.unlink(missing_ok=True)  # never read an earlier run's report as this one's
    env = {**os.environ, "ARRAY_API_TESTS_MODULE": target.module(),
           "ARRAY_API_TESTS_VERSION": API_VERSION,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("JAX_ENABLE_X64", None)  # gradbridge's JAX backends set their own precision
    if target.anchor and target.framework == "jax":
        env["JAX_ENABLE_X64"] = "1"
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="array-api-") as scratch, open(log, "wb") as out:
        proc = subprocess.Popen(pytest_command(args, target, report), cwd=scratch, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=args.timeout)
        except BaseException as exc:  # timeout or Ctrl-C: the suite runs in its own session
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            seconds = time.monotonic() - start
            return Result(target, seconds, error=f"timeout after {args.timeout:g} s")
    seconds = time.monotonic() - start
    if proc.returncode < 0:  # a partial report would read as a short, successful run
        name = signal.Signals(-proc.returncode).name
        return Result(target, seconds, error=f"killed by {name} (see {log.name})")
    if not report.exists():
        return Result(target, seconds, error=f"crashed, exit code {proc.returncode}: "
                      + crash_line(log.read_text(errors="replace")))
    try:
        return parse_report(target, json.loads(report.read_text()), seconds)
    except ValueError as exc:
        return Result(target, seconds, error=f"unreadable report {report}: {exc}")


def comparison(result: Result, anchors: dict[str, Result]) -> list[str]:
    """One row comparing a gradbridge run with the anchor of its framework."""
    anchor = anchors.get(result.target.framework)
    ours = len(result.not_passing)
    if anchor is None or anchor.error or result.error:
        return [result.target.namespace, str(result.target.dtype), str(ours), "-", "-", "-"]
    theirs = set(anchor.ids("failed", "error"))
    beyond = len(set(result.not_passing) - theirs)
    verdict = "yes" if ours <= len(theirs) else "no"
    return [result.target.namespace, str(result.target.dtype), str(ours), str(len(theirs)),
            verdict, str(beyond)]


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def summary(results: list[Result], xfails: Path) -> str:
    """The markdown summary of every run, the anchor comparison and the new failures."""
    rows = []
    for r in results:
        c = r.counts
        rows.append([r.target.namespace, "x64" if r.target.framework == "jax" and r.target.anchor
                     else (r.target.dtype or "-"), str(c.get("passed", 0)), str(c.get("failed", 0)),
                     str(c.get("xfailed", 0)), str(c.get("error", 0)), f"{r.seconds:.0f}",
                     f"errored: {r.error}" if r.error else "ok"])
    parts = [table(["namespace", "dtype", "passed", "failed", "xfailed", "errors", "seconds",
                    "run"], rows)]
    anchors = {r.target.framework: r for r in results if r.target.anchor}
    ours = [r for r in results if not r.target.anchor]
    if ours:
        parts.append("gradbridge against the anchor of its framework (not passing = failed + "
                     "xfailed + errors; the anchor runs without the xfails file):\n\n" + table(
            ["namespace", "dtype", "not passing", "anchor failed", "no more than anchor",
             "failing where the anchor passes"], [comparison(r, anchors) for r in ours]))
    for r in ours:
        if r.new_failures:
            lines = [f"- `{i}`: {r.messages.get(i, '')}" for i in r.new_failures[:15]]
            more = len(r.new_failures) - 15
            lines += [f"- ... and {more} more (see {r.target.label}.failing.txt)"] * (more > 0)
            parts.append(f"New failures in {r.target.label} (not in {xfails.name}):\n\n"
                         + "\n".join(lines))
        if r.ids("xpassed"):
            parts.append(f"{r.target.label}: {len(r.ids('xpassed'))} listed in {xfails.name} "
                         "passed (XPASS; stale there unless another run fails them)")
    return "\n\n".join(parts) + "\n"


def verdict_line(results: list[Result]) -> tuple[int, str]:
    """The exit status and the one line that says why."""
    new = {r.target.label: len(r.new_failures) for r in results if r.new_failures}
    errored = [f"{r.target.label} ({r.error})" for r in results if r.error]
    problems = []
    if new:
        problems.append("new failures not in the xfails file: "
                        + ", ".join(f"{k} {v}" for k, v in new.items()))
    if errored:
        problems.append("runs errored: " + "; ".join(errored))
    if problems:
        return 1, "conformance: FAILED, " + "; ".join(problems)
    return 0, "conformance: OK, every run completed and every gradbridge failure is expected"


# ---- the xfails file -------------------------------------------------------------------------

RUNS = " -- fails on: "  # where a group failed when the file was last written
MISSING = re.compile(r"(\w+) is not defined in|is missing the (?:\w+ )?(?:function|method) "
                     r"(\w+)|has no attribute '(\w+)'")


def read_xfails(path: Path) -> dict[str, str]:
    """The ids of an xfails file, each with the reason (comment line) above it, in order."""
    entries: dict[str, str] = {}
    reason = ""
    for line in path.read_text().splitlines() if path.exists() else []:
        if not line.strip():
            reason = ""
        elif line.startswith("#"):
            reason = line.lstrip("#").strip().split(RUNS, 1)[0]
        else:
            entries[line] = reason
    return entries


def base_id(test_id: str) -> str:
    """The test function's id without its parametrization (the suite matches it to all)."""
    return test_id.split("[", 1)[0]


def group_of(test_id: str) -> str:
    """The name a reason is written for: the test, and the function tested when the
    parametrization starts with a call (special cases: ``test_unary[expm1(...) -> ...]``)."""
    base = base_id(test_id)
    call = re.match(r"\[(\w+)\(", test_id[len(base):])
    name = base.rsplit("::", 1)[-1]
    return f"{name}[{call.group(1)}]" if call else name


def guess_reason(messages: list[str]) -> str:
    """A reason for a group of failures from their messages, or a TODO quoting the first."""
    missing = sorted({next(g for g in m.groups() if g) for s in messages
                      if (m := MISSING.search(s))})
    if missing and all(MISSING.search(s) for s in messages):
        return f"missing from the namespace: {', '.join(missing[:6])}"
    return f"TODO {(messages or ['no message'])[0].removeprefix('AssertionError: ')[:100]}"


def write_xfails(path: Path, results: list[Result], *, prune: bool, compress: bool) -> int:
    """Rewrite the xfails file from the gradbridge runs' failures; returns the number of ids.

    ``prune`` drops old entries no run failed (only sound after the full matrix ran);
    ``compress`` writes a test's base id when every collected parametrization failed.
    """
    old = read_xfails(path)
    ours = [r for r in results if not r.target.anchor and not r.error]
    failing: dict[str, set[str]] = defaultdict(set)  # id -> labels of the runs it failed in
    messages: dict[str, str] = {}
    collected: dict[str, set[str]] = defaultdict(set)
    for r in ours:
        for i in r.not_passing:
            failing[i].add(r.target.label)
            messages.setdefault(i, r.messages.get(i, ""))
        for i in r.outcomes:
            collected[base_id(i)].add(i)
    entries = set(failing) | (set() if prune else set(old))
    for base in {base_id(i) for i in entries}:
        whole = bool(collected[base]) and collected[base] <= failing.keys()
        if base in entries or (compress and whole):  # one line covers every parametrization
            entries = {i for i in entries if base_id(i) != base} | {base}
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)  # (file, name) -> ids
    for i in sorted(entries):
        groups[i.split("::", 1)[0], group_of(i)].append(i)
    blocks = []
    for (_, name), ids in sorted(groups.items()):
        sources = sorted(f for f in failing if f in ids or base_id(f) in ids)
        kept = next((old[i] for i in [*ids, *sources] if old.get(i)
                     and not old[i].split(": ", 1)[-1].startswith("TODO")), None)
        reason = kept or f"{name}: " + guess_reason([messages[i] for i in sources
                                                     if messages.get(i)])
        runs = sorted({label for i in sources for label in failing[i]})
        blocks.append(f"# {reason}" + (RUNS + " ".join(runs) if runs else "") + "\n"
                      + "".join(f"{i}\n" for i in ids))
    path.write_text(XFAILS_HEADER + "\n" + "\n".join(blocks))
    return len(entries)


ANCHOR_TOO = "; the anchor for the same framework fails it too"
GROUP_REASON = re.compile(r"^(test_\w+(?:\[\w+\])?): (.*)$")
"""A reason line of the xfails file: the test group it is written for, then the reason."""


def xfail_blocks(path: Path) -> list[tuple[str, str, list[str]]]:
    """The xfails file as (reason, runs it failed in, ids) blocks, in file order; a comment block
    whose last line names a test group gives that line's reason, any other its joined text."""
    blocks: list[tuple[str, str, list[str]]] = []
    comments: list[str] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            comments = []
        elif line.startswith("#"):
            comments.append(line.lstrip("#").strip())
        elif comments:
            last = comments[-1].split(RUNS, 1)
            named = GROUP_REASON.match(last[0])
            reason = named.group(2) if named else " ".join(comments)
            blocks.append((reason, last[1] if named and len(last) > 1 else "", [line]))
            comments = []
        elif blocks:
            blocks[-1][2].append(line)
    return blocks


def differences(path: Path) -> str:
    """A Markdown table of where gradbridge's namespaces still differ from the standard: one line
    per reason in the xfails file, with the tests it covers and where they fail."""
    rows: dict[str, tuple[set[str], set[str], bool]] = {}
    for reason, runs, ids in xfail_blocks(path):
        shared = reason.endswith(ANCHOR_TOO)
        key = reason.removesuffix(ANCHOR_TOO)
        tests, where, _ = rows.setdefault(key, (set(), set(), shared))
        tests.update(group_of(i) for i in ids)
        random_only = runs.endswith("(random examples)")
        for run in runs.removesuffix("(random examples)").split():
            where.add(run.split("-", 1)[0] + (" (random examples)" if random_only else ""))
    lines = ["| difference | backends | tests | anchor fails too |", "|---|---|---|---|"]
    for key, (tests, where, shared) in rows.items():
        lines.append(f"| {key} | {', '.join(sorted(where)) or 'not recorded'} | "
                     f"{', '.join(f'`{t}`' for t in sorted(tests))} | {'yes' if shared else '-'} |")
    return "\n".join(lines) + "\n"


# ---- command line ----------------------------------------------------------------------------

def names(text: str, allowed: tuple[str, ...]) -> list[str]:
    """A comma-separated list checked against ``allowed``; "none" or "" is the empty list."""
    chosen = [] if text.strip() in ("", "none") else [n.strip() for n in text.split(",")]
    bad = [n for n in chosen if n not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(allowed)}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The runner's options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", type=lambda s: names(s, BACKENDS), default=list(BACKENDS),
                   help="gradbridge backends to test, comma-separated, or none (default: all)")
    p.add_argument("--dtypes", type=lambda s: names(s, DTYPES), default=list(DTYPES))
    p.add_argument("--no-anchors", action="store_true", help="skip the anchor namespaces")
    p.add_argument("--max-examples", type=int, default=5)
    p.add_argument("--suite", type=Path, default=ROOT.parent / "shared" / "array-api-tests")
    p.add_argument("--xfails", type=Path, default=XFAILS)
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: conformance/local/<UTC time>/)")
    p.add_argument("-k", default=None, help="pytest -k expression, passed through")
    p.add_argument("--jobs", type=int, default=1, choices=(1, 2), help="runs at a time")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    p.add_argument("--test-timeout", type=float, default=300, help="seconds per test")
    p.add_argument("--no-fft", action="store_true",
                   help="skip the fft extension (its 14 tests cost 2-12 s per run)")
    p.add_argument("--derandomize", action="store_true", help="fixed hypothesis examples")
    p.add_argument("--update-xfails", action="store_true",
                   help="rewrite the xfails file from this session's gradbridge failures")
    p.add_argument("--keep-xfails", action="store_true",
                   help="with --update-xfails, never drop old entries (collects flaky failures)")
    p.add_argument("--differences", action="store_true",
                   help="print the README's table of differences from the xfails file and exit")
    args = p.parse_args(argv)
    args.suite = args.suite.resolve()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    args.out = (args.out or ROOT / "conformance" / "local" / stamp).resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every requested namespace, write the summary, return the exit status."""
    args = parse_args(argv)
    if args.differences:
        print(differences(args.xfails), end="")
        return 0
    if not (args.suite / "array_api_tests").is_dir():
        print(f"error: no Array API suite at {args.suite}; pass --suite PATH", file=sys.stderr)
        return 2
    targets = [] if args.no_anchors else [Target(f) for f in BACKENDS if f in args.backends
                                          or not args.backends]
    targets += [Target(b, d) for b in args.backends for d in args.dtypes]
    if not targets:
        print("error: nothing to run (no backends and no anchors)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    def one(target: Target) -> Result:
        result = run_target(args, target)
        state = result.error or ", ".join(f"{n} {o}" for o, n in sorted(result.counts.items()))
        print(f"{target.label}: {state} ({result.seconds:.0f} s)", flush=True)
        (args.out / f"{target.label}.failing.txt").write_text(
            "".join(f"{i}\n" for i in result.not_passing))
        return result

    print(f"{len(targets)} runs, {args.jobs} at a time, into {args.out}", flush=True)
    start = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, targets))
    status, line = verdict_line(results)
    text = summary(results, args.xfails) + f"\nTotal wall time {time.monotonic() - start:.0f} s.\n"
    text += f"\n{line}\n"
    (args.out / "summary.md").write_text(text)
    print("\n" + text, end="")
    if args.update_xfails:
        full = (set(args.backends) == set(BACKENDS) and set(args.dtypes) == set(DTYPES)
                and not args.k and not any(r.error for r in results) and not args.keep_xfails)
        n = write_xfails(args.xfails, results, prune=full, compress=not args.k)
        print(f"wrote {n} ids to {args.xfails}" + ("" if full else
              " (old entries kept: dropping them needs every backend x dtype, no -k, no errored"
              " run, no --keep-xfails)"))
    return status


if __name__ == "__main__":
    sys.exit(main())
