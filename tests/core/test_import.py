"""Importing gradbridge stays light: frameworks load only when their backend is asked for.

Each check runs in a fresh interpreter, since this test session has long since imported
everything; the child prints which heavy modules it ended up with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("jax", "torch", "matplotlib", "rich")


def _heavy_modules_after(code: str) -> set[str]:
    """Run ``code`` in a new interpreter and return which of HEAVY it left in sys.modules."""
    script = (f"import sys, json\n{code}\n"
              f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADBRIDGE_")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=180, env=env)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_import_gradbridge_loads_no_framework_or_ui_library() -> None:
    assert _heavy_modules_after("import gradbridge") == set()


def test_public_names_resolve_without_frameworks() -> None:
    code = ("import gradbridge as gb\n"
            "gb.resolve(); gb.use_backend; gb.register_backend; gb.Backend; gb.Capabilities")
    assert _heavy_modules_after(code) == set()


def test_numpy_backend_loads_no_other_framework() -> None:
    code = ("import gradbridge as gb\n"
            "be = gb.get_backend('numpy', dtype='float64')\n"
            "assert float(be.to_numpy(be.dot(be.from_host([1.0, 2.0]), be.from_host([3.0, 4.0])))) "
            "== 11.0")
    assert _heavy_modules_after(code) == set()


@pytest.mark.parametrize(("wanted", "unwanted"), [("jax", "torch"), ("torch", "jax")])
def test_a_framework_backend_loads_only_its_framework(wanted: str, unwanted: str) -> None:
    code = f"import gradbridge as gb\ngb.get_backend({wanted!r})"
    loaded = _heavy_modules_after(code)
    assert wanted in loaded
    assert unwanted not in loaded
