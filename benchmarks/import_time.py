"""How long ``import gradbridge`` takes next to ``import numpy``, each in a fresh interpreter.

gradbridge promises a light import (numpy and nothing heavy: no jax, torch, rich or
matplotlib). Each run starts a new ``python -c`` that times its own import with
``time.perf_counter`` (interpreter start-up is not counted); the imports alternate so that
drift in machine load hits all alike. ``import gradbridge`` alone may not load numpy at all
(NumPy loads with the NumPy backend), so the target is stated for what a user pays: the
median of ``import numpy, gradbridge`` at most 50 ms above the median of ``import numpy``.

    python benchmarks/import_time.py [--runs 21] [--json PATH] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import machine

TARGET_EXTRA_MS = 50.0
# row label -> the names one ``import`` statement imports
IMPORTS = {"numpy": "numpy", "gradbridge": "gradbridge", "numpy + gradbridge": "numpy, gradbridge"}
HEAVY = ("numpy", "jax", "torch", "rich", "matplotlib")

_PROBE = """\
import sys, time
start = time.perf_counter()
import {names}
elapsed = time.perf_counter() - start
print(elapsed, ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def time_import(names: str) -> tuple[float, list[str]]:
    """Seconds one fresh interpreter spends on ``import names``, and the HEAVY modules loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADBRIDGE_")}
    out = subprocess.run([sys.executable, "-c", _PROBE.format(names=names, heavy=HEAVY)],
                         capture_output=True, text=True, check=True, env=env).stdout.split()
    return float(out[0]), out[1].split(",") if len(out) > 1 else []


def slowest_parts(module: str, count: int = 8) -> list[tuple[float, str]]:
    """The modules with the largest self time in one ``python -X importtime`` run (ms, name)."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True, check=True).stderr
    parts = []
    for line in err.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[0].strip().isdigit():
            parts.append((int(fields[0]) / 1000, fields[2].rstrip()))
    return sorted(parts, reverse=True)[:count]


def measure(runs: int) -> dict[str, Any]:
    """Alternate the imports ``runs`` times each; return per-row samples and a summary."""
    samples: dict[str, list[float]] = {label: [] for label in IMPORTS}
    loaded: set[str] = set()
    for _ in range(runs):
        for label, names in IMPORTS.items():
            seconds, pulled_in = time_import(names)
            samples[label].append(seconds * 1000)
            if label == "gradbridge":
                loaded.update(pulled_in)
    medians = {label: statistics.median(samples[label]) for label in IMPORTS}
    extra = medians["numpy + gradbridge"] - medians["numpy"]
    return {
        "runs": runs,
        "ms": {label: {"median": medians[label], "min": min(samples[label]),
                       "max": max(samples[label]), "samples": samples[label]}
               for label in IMPORTS},
        "extra_ms": extra,
        "target_extra_ms": TARGET_EXTRA_MS,
        "meets_target": extra <= TARGET_EXTRA_MS,
        "gradbridge_loads_numpy": "numpy" in loaded,
        "heavy_modules_imported": sorted(loaded - {"numpy"}),
        "slowest_parts_ms": slowest_parts("gradbridge"),
        "machine": machine.describe(),
    }


def print_report(result: dict[str, Any]) -> None:
    info = result["machine"]
    print(f"machine: {info['cpu']}, {info['cpus']} CPUs, {info['platform']}, "
          f"python {info['versions']['python']}")
    print(f"fresh interpreters per module: {result['runs']} (alternating)\n")
    print(f"{'import':<20}{'median ms':>11}{'min ms':>9}{'max ms':>9}")
    for label, ms in result["ms"].items():
        print(f"{label:<20}{ms['median']:>11.1f}{ms['min']:>9.1f}{ms['max']:>9.1f}")
    verdict = "meets" if result["meets_target"] else "MISSES"
    print(f"\n(numpy + gradbridge) - numpy: {result['extra_ms']:+.1f} ms (medians); {verdict} "
          f"the target of <= {result['target_extra_ms']:.0f} ms")
    heavy = result["heavy_modules_imported"]
    numpy_too = "yes" if result["gradbridge_loads_numpy"] else "no"
    print(f"import gradbridge alone loads numpy: {numpy_too}; "
          f"jax/torch/rich/matplotlib: {', '.join(heavy) or 'none'}")
    print("\nlargest self times in one -X importtime run of gradbridge:")
    for ms, name in result["slowest_parts_ms"]:
        print(f"  {ms:7.2f} ms  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="fresh interpreters per module")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    result = measure(args.runs)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    missed = not result["meets_target"] or result["heavy_modules_imported"]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
