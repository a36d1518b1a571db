"""Parameter trees: flatten/unflatten round trips, leaf names, and moves to and from backends."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import tolerance

from gradbridge.core import tree
from gradbridge.core.backend import Backend, InvalidArgument

NESTED: dict[str, Any] = {"encoder": {"W": np.arange(6.0).reshape(2, 3), "b": np.zeros(3)},
          "scale": np.array(2.5), "heads": [np.ones(2), np.full(1, -1.0)]}


def test_flatten_unflatten_round_trip() -> None:
    leaves, treedef = tree.flatten(NESTED)
    # Depth first, in dict insertion order.
    assert [leaf.shape for leaf in leaves] == [(2, 3), (3,), (), (2,), (1,)]
    assert treedef.num_leaves == 5
    rebuilt = tree.unflatten(treedef, [leaf * 2 for leaf in leaves])
    assert list(rebuilt) == ["encoder", "scale", "heads"]
    np.testing.assert_array_equal(rebuilt["encoder"]["W"], NESTED["encoder"]["W"] * 2)
    np.testing.assert_array_equal(rebuilt["heads"][1], [-2.0])
    assert isinstance(rebuilt["heads"], list)


def test_unflatten_checks_the_leaf_count() -> None:
    _, treedef = tree.flatten({"w": 1.0, "b": 2.0})
    with pytest.raises(InvalidArgument, match=r"needs 2 leaves .* got 3"):
        tree.unflatten(treedef, [1, 2, 3])


def test_named_leaves() -> None:
    names = [name for name, _ in tree.named_leaves(NESTED)]
    assert names == ["encoder.W", "encoder.b", "scale", "heads.0", "heads.1"]


def test_tree_map_is_the_shared_one() -> None:
    from gradbridge.core.backend import tree_map

    assert tree.tree_map is tree_map
    doubled = tree.tree_map(lambda a, b: a + b, {"w": 1.0, "b": [2.0]}, {"w": 3.0, "b": [4.0]})
    assert doubled == {"w": 4.0, "b": [6.0]}


def test_to_backend_and_back(backend: Backend) -> None:
    on_backend = tree.to_backend(backend, NESTED)
    assert str(on_backend["scale"].dtype).endswith(backend.dtype)
    back = tree.to_numpy(backend, on_backend)
    for (name, got), (_, want) in zip(tree.named_leaves(back), tree.named_leaves(NESTED),
                                      strict=True):
        assert isinstance(got, np.ndarray) and got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=tolerance(backend))
