"""``manifest.json``: what is needed to reproduce a comparison and to read its numbers.

Package versions, the CPU and GPU, the precision flags in force (JAX x64, TF32), seeds, the git
commit and the command line. Framework settings are read from ``sys.modules`` only, so writing
a manifest never imports a framework the comparison did not use.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = ("gradbridge", "numpy", "jax", "jaxlib", "torch", "matplotlib", "rich")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each relevant distribution (None when it is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    """The CPU's marketing name where the OS tells it, else the architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def gpu_names() -> list[str]:
    """Names of the NVIDIA GPUs that nvidia-smi sees (empty without a driver)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def precision_flags() -> dict[str, Any]:
    """Precision settings of the frameworks this process has loaded (TF32, JAX x64/matmul)."""
    flags: dict[str, Any] = {}
    jax = sys.modules.get("jax")
    if jax is not None:
        flags["jax_enable_x64 (process-wide)"] = bool(jax.config.jax_enable_x64)
        flags["jax_default_matmul_precision"] = jax.config.jax_default_matmul_precision
    torch = sys.modules.get("torch")
    if torch is not None:
        flags["torch.backends.cuda.matmul.allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        flags["torch.backends.cudnn.allow_tf32"] = torch.backends.cudnn.allow_tf32
        flags["torch.get_float32_matmul_precision"] = torch.get_float32_matmul_precision()
        flags["torch.get_num_threads"] = torch.get_num_threads()
    return flags


def backend_details(names: list[str]) -> dict[str, Any]:
    """Version, devices and notes (e.g. how float64 is enabled) of each backend, or why not."""
    from gradbridge.core.registry import describe

    details = {}
    for name in names:
        info = describe(name)
        details[name] = {"version": info.version, "devices": list(info.devices),
                         "notes": list(info.notes), "unavailable": info.reason,
                         "source": info.source}
    return details


def git_commit(directory: Path) -> str | None:
    """The commit of the checkout gradbridge runs from, with '+dirty' for local changes."""
    if shutil.which("git") is None:
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True,
                              text=True, timeout=10, check=False)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=directory, capture_output=True, text=True, timeout=10,
                               check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment(backends: list[str]) -> dict[str, Any]:
    """Everything about this machine and process that the numbers depend on."""
    return {
        "packages": package_versions(),
        "platform": platform.platform(),
        "cpu": {"model": cpu_model(), "count": cpu_count()},
        "gpus": gpu_names(),
        "precision_flags": precision_flags(),
        "backends": backend_details(backends),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "written": now(),
    }


def now() -> str:
    """The local time with its UTC offset, to the second."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
