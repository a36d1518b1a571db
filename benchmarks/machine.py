"""The machine and software a benchmark ran on, written beside the figures it produced.

Timings mean nothing without the CPU, core count, GPU and every version involved, so the
suite records them in the same file as the numbers. Nothing here imports jax, torch or keras:
versions come from package metadata, GPUs from ``nvidia-smi``.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from typing import Any

PACKAGES = ("gradbridge", "numpy", "jax", "jaxlib", "torch", "keras", "matplotlib")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def gpus() -> list[str]:
    """Names and memory of the NVIDIA GPUs present, one string each; empty without any."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def versions() -> dict[str, str | None]:
    """Installed version of each package the benchmark touches (None when absent)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def describe() -> dict[str, Any]:
    """Everything needed to tell whether two result files are comparable."""
    return {
        "cpu": cpu_model(),
        "cpus": cpu_count(),
        "gpus": gpus(),
        "platform": platform.platform(),
        "versions": versions(),
    }


def slug(info: dict[str, Any]) -> str:
    """A short file-name-safe name for a machine, e.g. 'amd-epyc-2cpu' or '...-nvidia-h100'."""
    cpu = re.sub(r"\((r|tm)\)|\bcpu\b|processor|@.*", "", info["cpu"], flags=re.IGNORECASE)
    name = f"{cpu}-{info['cpus']}cpu"
    if info["gpus"]:
        name += "-" + info["gpus"][0].split(",")[0]
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# ------------------------------------------------------------------ process memory


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field} line")


def rss_bytes() -> int:
    """Resident set size of this process now."""
    return _status_kib("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Restart the resident-set high-water mark from the current size (Linux >= 4.0).

    Writing 5 to /proc/self/clear_refs resets VmHWM (and with it getrusage's ru_maxrss), so
    a peak read afterwards belongs to the code that ran since, not to setup. False when the
    kernel refuses; the peak then also covers what ran before.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """Resident-set high-water mark (VmHWM; the same figure getrusage reports as ru_maxrss)."""
    try:
        return _status_kib("VmHWM") * 1024
    except OSError:  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
