"""Where a comparison's files live and how they are written: atomically, and resumably.

Every file is written atomically (a temp file beside it, then ``os.replace``), so a reader, or a
comparison killed mid-write, only ever sees a complete old or new version. A finished run's
file is kept by ``--resume`` only when it is a valid record of its cell made with the same
settings.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradbridge.core.backend import InvalidArgument
from gradbridge.experiments.record import RunRecord

RESULTS_ROOT = Path("results")
KEPT_STATUSES = ("ok", "skipped")  # finished runs that --resume keeps; errors are redone
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


# ------------------------------------------------------------------------- resume


def stored_run(path: Path, cell: tuple[str, str, str, str], settings: Mapping[str, Any],
               source: str = "") -> tuple[RunRecord | None, str]:
    """The finished run of ``cell`` at ``path`` to keep, else None and why it is not kept:
    it must be made with the same ``settings`` by the same ``source`` (a file digest).

    A missing file or a run that ended in an error is simply redone (the reason is empty).
    """
    try:
        data = read_json(path)
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError):
        return None, "is unreadable or not valid JSON"
    try:
        record = RunRecord.from_dict(data) if isinstance(data, dict) else None
    except ValueError:
        record = None
    if record is None or record.cell != cell:
        return None, "is not a run record of this cell"
    if record.status not in KEPT_STATUSES:
        return None, ""
    if not record.settings and settings:
        return None, "holds no settings to check (an older gradbridge wrote it)"
    changed = [f"{k}: stored {record.settings.get(k)}, given {v}" for k, v in settings.items()
               if record.settings.get(k) != v]
    if changed:
        return None, f"was made with other settings ({'; '.join(changed)})"
    if record.source != source:
        return None, "was made by another version of the experiment's code"
    return record, ""


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
        manifest = read_json(directory / "manifest.json")
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "finished" in manifest
