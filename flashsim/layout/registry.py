"""Layout names → layouts with their defaults (what `simulate --layout NAME` and `compare` use)."""

from __future__ import annotations

from typing import Any

from ..data import TRAINING_TRACE
from ..errors import InputError
from ..trace.format import ActivationTrace
from .base import Layout
from .coactivation import CoactivationLayout
from .mmap import MmapLayout
from .naive import NaiveLayout
from .sparse import SparseLayout

DEFAULT_WINDOW = 5  # the paper's k for OPT-6.7B (v2)

# name: (factory, defaults); a factory takes keyword parameters
LAYOUTS: dict[str, tuple[type, dict[str, Any]]] = {
    "naive": (NaiveLayout, {"dram_fraction": 0.0, "chunk_bytes": 1 << 20}),
    "hybrid": (NaiveLayout, {"dram_fraction": 0.5, "chunk_bytes": 1 << 20}),
    "sparse": (SparseLayout, {"bundled": False}),
    "bundled": (SparseLayout, {"bundled": True}),
    "windowed": (SparseLayout, {"bundled": False, "window": DEFAULT_WINDOW}),
    "windowed+bundled": (SparseLayout, {"bundled": True, "window": DEFAULT_WINDOW}),
    "coactivation-friend": (CoactivationLayout, {"variant": "friend"}),
    "coactivation": (CoactivationLayout, {"variant": "order"}),
    "windowed+coactivation-friend": (CoactivationLayout,
                                     {"variant": "friend", "window": DEFAULT_WINDOW}),
    "windowed+coactivation": (CoactivationLayout, {"variant": "order", "window": DEFAULT_WINDOW}),
    # the same bundled records chained by the greedy co-activation path (order method "path")
    "coactivation-path": (CoactivationLayout, {"variant": "order", "order_method": "path"}),
    "windowed+coactivation-path": (CoactivationLayout, {"variant": "order", "order_method": "path",
                                                        "window": DEFAULT_WINDOW}),
    # the store file through the OS page cache (mmap): every row, or the predicted rows
    "mmap-dense": (MmapLayout, {"pattern": "dense"}),
    "mmap-sparse": (MmapLayout, {"pattern": "sparse"}),
}

COMPARE_ORDER = ("naive", "hybrid", "sparse", "windowed", "bundled", "windowed+bundled",
                 "coactivation-friend", "coactivation", "windowed+coactivation-friend",
                 "windowed+coactivation")

def layout_names() -> list[str]:
    return list(LAYOUTS)


_COMMON = {"block_bytes", "merge_gap_bytes", "max_read_bytes"}
_ALLOWED = {
    NaiveLayout: _COMMON | {"dram_fraction", "chunk_bytes"},
    SparseLayout: _COMMON | {"window", "dram_budget_bytes"},
    CoactivationLayout: _COMMON | {"window", "dram_budget_bytes", "order_method",
                                   "hot_threshold", "train_set"},
    MmapLayout: {"block_bytes", "budget_bytes", "readahead_bytes", "threads", "bundled",
                  "page_cache", "charged_bytes"},
}


def make_layout(name: str, *, train_trace: ActivationTrace | None = None,
                **overrides: Any) -> Layout:
    """A layout by name with its defaults and `overrides` applied (None values ignored).

    Co-activation layouts learn from `train_trace` (default: the bundled training trace).
    A parameter the layout does not take (e.g. a window for 'sparse') is an InputError.
    """
    if name not in LAYOUTS:
        raise InputError(f"unknown layout {name!r}", key="layout",
                         expected="one of " + ", ".join(LAYOUTS))
    factory, defaults = LAYOUTS[name]
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in given:
        windowless = key in ("window", "dram_budget_bytes") and "window" not in defaults
        if key not in _ALLOWED[factory] or windowless:
            hint = " (use a windowed+ layout)" if windowless else ""
            raise InputError(f"layout {name!r} takes no {key}{hint}", key=key)
    params = {**defaults, **given}
    if factory is CoactivationLayout:
        if train_trace is None:
            train_trace = ActivationTrace.load(TRAINING_TRACE)
        params["train_trace"] = train_trace
    return factory(name=name, **params)
