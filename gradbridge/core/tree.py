"""Parameters as (nested) dicts of arrays: map, flatten, unflatten, and moves to and from a backend.

Models, optimizers and the training loop hold parameters as plain dicts (``{"w": ..., "b": ...}``
or nested ones), which every framework's autodiff and ``jit`` accept. ``tree_map`` itself lives
in :mod:`gradbridge.core.backend` because backends need it too; it is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradbridge.core.backend import Backend, InvalidArgument, tree_map

__all__ = ["TreeDef", "flatten", "named_leaves", "to_backend", "to_numpy", "tree_map",
           "unflatten"]


class _Leaf:
    """Marks where a leaf sat in a flattened tree's structure."""

    def __repr__(self) -> str:
        return "*"


_LEAF = _Leaf()


@dataclass(frozen=True)
class TreeDef:
    """The shape of a tree without its leaves: enough to put leaves back where they were."""

    structure: Any
    num_leaves: int


def flatten(tree: Any) -> tuple[list[Any], TreeDef]:
    """The leaves in a fixed order (dict insertion order, depth first) and the structure."""
    leaves: list[Any] = []

    def take(leaf: Any) -> _Leaf:
        leaves.append(leaf)
        return _LEAF

    return leaves, TreeDef(tree_map(take, tree), len(leaves))


def unflatten(treedef: TreeDef, leaves: Sequence[Any]) -> Any:
    """Inverse of :func:`flatten`: rebuild the tree from its structure and leaves."""
    if len(leaves) != treedef.num_leaves:
        raise InvalidArgument(
            f"unflatten needs {treedef.num_leaves} leaves for this structure, got {len(leaves)}"
        )
    remaining = iter(leaves)
    return tree_map(lambda _: next(remaining), treedef.structure)


def named_leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``[("W0", leaf), ("layer.b", leaf), ...]``: each leaf with its dotted path, for printing."""
    if isinstance(tree, dict):
        items: list[tuple[str, Any]] = []
        for key, value in tree.items():
            items += named_leaves(value, f"{prefix}{key}.")
        return items
    if isinstance(tree, list | tuple):
        items = []
        for i, value in enumerate(tree):
            items += named_leaves(value, f"{prefix}{i}.")
        return items
    return [] if tree is None else [(prefix[:-1], tree)]


def to_backend(be: Backend, tree: Any) -> Any:
    """Every leaf as an array of ``be`` (floating leaves take the backend's dtype and device)."""
    return tree_map(be.from_host, tree)


def to_numpy(be: Backend, tree: Any) -> Any:
    """Every leaf copied to a host ``numpy.ndarray`` (in the backend's dtype)."""
    return tree_map(lambda leaf: np.asarray(be.to_numpy(leaf)), tree)
