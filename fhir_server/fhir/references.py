"""Rewriting the references inside a resource (any depth, any element named ``reference``)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["map_references"]


def map_references(node: object, resolve: Callable[[str], str]) -> object:
    """``node`` with every ``reference`` string passed through ``resolve``: the parts that
    change are copied, the rest is shared with ``node``."""
    if isinstance(node, dict):
        copy = None
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                mapped = resolve(value)
            elif isinstance(value, (dict, list)):
                mapped = map_references(value, resolve)
            else:
                continue
            if mapped is not value:
                if copy is None:
                    copy = dict(node)
                copy[key] = mapped
        return node if copy is None else copy
    if isinstance(node, list):
        mapped = [map_references(value, resolve) for value in node]
        return node if all(m is v for m, v in zip(mapped, node, strict=True)) else mapped
    return node
