"""The machine and software a benchmark ran on, written beside the figures it produced.

Timings mean nothing without the CPU, core count, GPU and every version involved, so the
suite records them in the same file as the numbers, described the same way as ``gradbridge
compare``'s manifest (whose helpers this reuses). Nothing here imports jax, torch or keras.
"""

from __future__ import annotations

import platform
import re
from typing import Any

from gradbridge.experiments import manifest

PACKAGES = ("gradbridge", "numpy", "jax", "jaxlib", "torch", "keras", "matplotlib")


def describe() -> dict[str, Any]:
    """Everything needed to tell whether two result files are comparable."""
    return {
        "cpu": manifest.cpu_model(),
        "cpus": manifest.cpu_count(),
        "gpus": manifest.gpu_names(),
        "platform": platform.platform(),
        "versions": manifest.package_versions(PACKAGES),
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
