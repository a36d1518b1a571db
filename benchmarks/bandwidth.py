"""The machine's main-memory bandwidth, measured with NumPy in the same run as the benchmarks.

The tutorial's full-batch step must read x and y at least once per epoch, so
``bytes read per epoch / read bandwidth`` is a floor no contestant can beat at large N. The
array is far larger than any cache, and each kernel's median over repeats is kept.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

DEFAULT_BYTES = 256 * 2**20


def _median_seconds(kernel: Callable[[], object], repeats: int) -> float:
    kernel()  # warm-up: page in the arrays, load the BLAS threads
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        kernel()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(nbytes: int = DEFAULT_BYTES, repeats: int = 7) -> dict[str, float]:
    """GB/s (1e9 bytes) of three kernels over a float64 array of ``nbytes``, and the read figure.

    - ``dot``: ``a @ a`` (BLAS, every core): reads ``nbytes`` once, writes nothing.
    - ``sum``: ``a.sum()`` (one core): reads ``nbytes`` once.
    - ``copy``: ``np.copyto(b, a)``: counted as ``2 * nbytes`` (one read, one write).

    ``read_GBps`` is the fastest read-only kernel: the most demanding honest bound.
    """
    a = np.full(nbytes // 8, 1.0)
    b = np.empty_like(a)
    rates = {
        "dot_GBps": a.nbytes / _median_seconds(lambda: a @ a, repeats) / 1e9,
        "sum_GBps": a.nbytes / _median_seconds(a.sum, repeats) / 1e9,
        "copy_GBps": 2 * a.nbytes / _median_seconds(lambda: np.copyto(b, a), repeats) / 1e9,
    }
    rates["read_GBps"] = max(rates["dot_GBps"], rates["sum_GBps"])
    rates["array_bytes"] = float(a.nbytes)
    return rates


def read_bound_s(n: int, itemsize: int, read_gbps: float) -> float:
    """Seconds to read x and y once each (``2 * n * itemsize`` bytes): one epoch's floor.

    One fused pass over (x, y) yields the loss and both gradients of ``w * x + b`` under MSE;
    the parameters are scalars, so nothing of size n has to be written.
    """
    return 2 * n * itemsize / (read_gbps * 1e9)
