"""JAX's float64 policies, each checked in a fresh process (x64 is a process-wide JAX flag).

Default ('process'): the first JAX backend turns x64 on, so a float64 backend's arrays compute
in float64 in plain operators and jnp calls too, and float32 backends stay float32. Opt-in
('scoped'): x64 only inside gradbridge's calls, the global flag left alone. References are
NumPy float64; float64 results must agree to 1e-14 relative (a few roundings, no truncation:
float32 would be off by ~1e-8).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

pytest.importorskip("jax")

PROCESS_SCRIPT = """
import json, logging, numpy as np
import jax, jax.numpy as jnp
import gradbridge as gb
records = []
handler = logging.Handler(); handler.emit = records.append
logging.getLogger("gradbridge").addHandler(handler)
logging.getLogger("gradbridge").setLevel("INFO")
before = bool(jax.config.jax_enable_x64)
be = gb.get_backend()          # GRADBRIDGE_BACKEND=jax GRADBRIDGE_DTYPE=float64
be32 = gb.get_backend("jax", dtype="float32")
rng = np.random.default_rng(0)
xn, yn = rng.standard_normal(64), rng.standard_normal(64)
A, B = rng.standard_normal((5, 7)), rng.standard_normal((7, 3))
x, y, w, b = be.from_host(xn), be.from_host(yn), be.from_host(0.3), be.from_host(0.1)
r, rn = w * x + b - y, 0.3 * xn + 0.1 - yn
errors = {
    "mean_of_operators": (be.mean((w * x + b - y) ** 2), np.mean(rn ** 2)),
    "scalar_times_mean": (0.5 * be.mean(r ** 2), 0.5 * np.mean(rn ** 2)),
    "matmul_operator": ((r @ r) / 64, rn @ rn / 64),
    "matrix_product": (be.from_host(A) @ be.from_host(B) * 2.0, A @ B * 2.0),
    "plain_jnp": (jnp.sum(jnp.sin(x) * 1e-3), np.sum(np.sin(xn) * 1e-3)),
}
p, pn = {"w": be.from_host(0.0), "b": be.from_host(0.0)}, {"w": 0.0, "b": 0.0}
step = be.value_and_grad(lambda q: be.mean((q["w"] * x + q["b"] - y) ** 2))
for _ in range(20):   # a plain update loop outside any gradbridge call
    _, g = step(p)
    p = {k: p[k] - 0.1 * g[k] for k in p}
    res = pn["w"] * xn + pn["b"] - yn
    pn = {"w": pn["w"] - 0.1 * np.mean(2 * res * xn), "b": pn["b"] - 0.1 * np.mean(2 * res)}
errors["update_loop"] = (be.stack([p["w"], p["b"]]), np.array([pn["w"], pn["b"]]))
out = {"before": before, "after": bool(jax.config.jax_enable_x64),
       "dtypes": {k: str(v[0].dtype) for k, v in errors.items()},
       "errors": {k: float(np.max(np.abs(np.asarray(v[0]) - v[1]) / np.abs(v[1])))
                  for k, v in errors.items()},
       "logged": [rec.getMessage() for rec in records]}
gb.get_backend("jax", dtype="float64")   # a second backend announces nothing more
x32 = be32.from_host(xn)
f32 = {"operators": x32 * 2.0 + 1.0, "mean": be32.mean(x32 ** 2), "matmul": x32 @ x32,
       "zeros": be32.zeros(3), "full": be32.full(2, 0.5),
       "grad": be32.grad(lambda v: be32.sum(v * v))(x32),
       "scan": be32.scan(lambda c: (c * 0.5, c), 1.0, 3)[0]}
out["float32_dtypes"] = sorted({str(v.dtype) for v in f32.values()})
out["float32_exact"] = bool(np.array_equal(np.asarray(f32["operators"]),
                                           xn.astype(np.float32) * np.float32(2) + np.float32(1)))
out["logged_after_second"] = len(records)
print(json.dumps(out))
"""

SCOPED_SCRIPT = """
import json, logging, numpy as np
import jax, jax.numpy as jnp
import gradbridge as gb
records = []
handler = logging.Handler(); handler.emit = records.append
logging.getLogger("gradbridge").addHandler(handler)
be = gb.get_backend("jax", dtype="float64")
one, tiny = be.from_host(1.0), be.from_host(1e-10)
inside = float(be.subtract(be.add(one, tiny), one))
namespace = float(be.linalg.vector_norm(be.expm1(be.stack([tiny, tiny]))))  # bound functions
g = be.grad(lambda v: be.sum(v * v * v))(be.from_host([1.0 + 1e-10, 2.0]))
with gb.use_backend("jax", dtype="float64"):
    in_block = str((be.from_host([1.0]) * 2.0).dtype)
print(json.dumps({"flag": bool(jax.config.jax_enable_x64), "inside": inside,
                  "namespace": namespace,
                  "grad_dtype": str(g.dtype), "in_block": in_block,
                  "default_after": str(jnp.ones(1).dtype),
                  "warned": [r.getMessage() for r in records if r.levelname == "WARNING"]}))
"""


def _run(script: str, **env: str) -> dict[str, Any]:
    """Run ``script`` in a new interpreter with ``env`` added; return the JSON it prints."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADBRIDGE_", "JAX_"))}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, env={**full_env, **env}, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def process_mode() -> dict[str, Any]:
    return _run(PROCESS_SCRIPT, GRADBRIDGE_BACKEND="jax", GRADBRIDGE_DTYPE="float64")


def test_float64_backend_turns_x64_on_for_the_process(process_mode: dict[str, Any]) -> None:
    assert process_mode["before"] is False and process_mode["after"] is True


def test_float64_is_float64_outside_gradbridge_calls(process_mode: dict[str, Any]) -> None:
    """Eager operators, matmul, plain jnp and a hand-written update loop, against NumPy."""
    assert set(process_mode["dtypes"].values()) == {"float64"}
    for case, error in process_mode["errors"].items():
        assert error < 1e-14, case  # float64 rounding; a float32 step would give ~1e-8


def test_x64_is_announced_once(process_mode: dict[str, Any]) -> None:
    assert len(process_mode["logged"]) == 1 and "x64" in process_mode["logged"][0]
    assert process_mode["logged_after_second"] == 1


def test_float32_backend_stays_exactly_float32(process_mode: dict[str, Any]) -> None:
    assert process_mode["float32_dtypes"] == ["float32"]
    assert process_mode["float32_exact"]  # the same float32 roundings as NumPy in float32


def test_scoped_mode_keeps_x64_to_gradbridge_calls_and_warns() -> None:
    got = _run(SCOPED_SCRIPT, GRADBRIDGE_JAX_X64="scoped")
    assert got["flag"] is False and got["default_after"] == "float32"
    assert got["inside"] == pytest.approx(1e-10, rel=1e-6)  # 0.0 if truncated to float32
    assert got["namespace"] == pytest.approx(2**0.5 * 1e-10, rel=1e-9)  # float32: 1e-7 off
    assert got["grad_dtype"] == "float64" and got["in_block"] == "float64"
    assert len(got["warned"]) == 1 and "scoped" in got["warned"][0]


def test_unknown_x64_mode_is_an_error_naming_the_variable() -> None:
    script = """
    import json, gradbridge as gb
    try:
        gb.get_backend("jax")
    except gb.InvalidArgument as exc:
        print(json.dumps({"error": str(exc)}))
    """
    got = _run(script, GRADBRIDGE_JAX_X64="sometimes")
    assert "GRADBRIDGE_JAX_X64='sometimes'" in got["error"] and "scoped" in got["error"]
