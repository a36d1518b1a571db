"""Peak memory of a run: host RSS sampled during it, and the CUDA allocator's peak where the
framework reports one. Frameworks are looked up in ``sys.modules``, never imported here."""

from __future__ import annotations

import os
import resource
import sys
import threading
from typing import Any

from gradbridge.core.backend import Backend


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

