"""Reading the run's parameters for people and trackers."""

from __future__ import annotations

from typing import Any


def without_anchors(value: Any) -> Any:
    """Parameters without YAML anchor keys (keys starting with ``_``, such as
    ``_network``: shared blocks that the keys using them already hold)."""
    if isinstance(value, dict):
        return {
            k: without_anchors(v)
            for k, v in value.items()
            if not str(k).startswith("_")
        }
    if isinstance(value, list):
        return [without_anchors(v) for v in value]
    return value
