"""The candidate families `advise` searches: each turns the search's settings into candidates.

A family is a function of the `SearchContext` returning `Candidate`s; `register_family` adds
one (e.g. a page-cache baseline), so the search itself names no layout. A candidate builds a
layout-like object (`plan(trace, which=...)` → IOPlan, `name`, `dense_ffn`), planned once per
merge gap and simulated at every queue depth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..geometry import ModelGeometry
from ..layout.registry import make_layout
from ..trace.format import ActivationTrace

DEFAULT_WINDOWS = (1, 2, 3, 4, 5, 6, 8)
DEFAULT_HYBRID_FRACTIONS = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class SearchContext:
    """What a family may enumerate against: the model, the windows searched, the budget."""

    geometry: ModelGeometry
    dram_budget_bytes: int
    windows: tuple[int, ...] = DEFAULT_WINDOWS
    train_trace: ActivationTrace | None = None


@dataclass(frozen=True)
class Candidate:
    """One layout configuration (everything but the merge gap and the queue depth)."""

    family: str
    label: str  # what the tables print, e.g. "windowed+bundled k=4"
    build: Callable[..., Any]  # build(block_bytes=...) → a fresh layout-like object, gap 0
    window: int | None = None
    takes_gap: bool = True  # False: one plan for every merge gap (the gap changes nothing)
    budgeted: bool = False  # its window shrinks to fit the DRAM budget
    reads_into_resident: bool = False  # reads land in the resident set (a page cache), no buffer
    options: dict[str, Any] = field(default_factory=dict, compare=False)


Family = Callable[[SearchContext], list[Candidate]]
FAMILIES: dict[str, Family] = {}


def register_family(name: str, family: Family) -> None:
    """Add (or replace) a family of candidates the search draws from by default."""
    FAMILIES[name] = family


def family_names() -> list[str]:
    return list(FAMILIES)


def candidates(ctx: SearchContext, names: list[str] | None = None) -> list[Candidate]:
    """The candidates of the families `names` (default: all registered), in that order."""
    names = family_names() if names is None else names
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise InputError(f"unknown layout family {unknown[0] if unknown else '(none)'!r}",
                         key="layouts", expected="names from " + ", ".join(FAMILIES))
    return [c for n in names for c in FAMILIES[n](ctx)]


def _registry_layout(name: str, ctx: SearchContext, **options: Any) -> Callable[..., Any]:
    def build(**common: Any) -> Any:
        return make_layout(name, train_trace=ctx.train_trace, **options, **common)
    return build


def _single(name: str) -> Family:
    """A registry layout without a window: one candidate."""
    def family(ctx: SearchContext) -> list[Candidate]:
        return [Candidate(name, name, _registry_layout(name, ctx))]
    return family


def _windowed(name: str) -> Family:
    """A windowed registry layout: one candidate per window k searched."""
    def family(ctx: SearchContext) -> list[Candidate]:
        return [Candidate(name, f"{name} k={k}", _registry_layout(name, ctx, window=k),
                          window=k, options={"window": k}) for k in ctx.windows]
    return family


def _hybrid(ctx: SearchContext) -> list[Candidate]:
    """The paper's hybrid at a few DRAM shares: the dense baseline's DRAM/time trade-off."""
    out = []
    for f in DEFAULT_HYBRID_FRACTIONS:
        build = _registry_layout("hybrid", ctx, dram_fraction=f)
        out.append(Candidate("hybrid", f"hybrid {f:.0%} in DRAM", build,
                             options={"dram_fraction": f}))
    return out


def _mmap(pattern: str) -> Family:
    """llama.cpp-style mmap of the store: the page cache holds the whole DRAM budget (its
    faults' reads do not depend on the merge gap)."""
    def family(ctx: SearchContext) -> list[Candidate]:
        name = f"mmap-{pattern}"
        build = _registry_layout(name, ctx, budget_bytes=ctx.dram_budget_bytes)
        return [Candidate(name, f"{name} (page cache = budget)", build, takes_gap=False,
                          reads_into_resident=True,
                          options={"budget_bytes": ctx.dram_budget_bytes})]
    return family


def _register_defaults() -> None:
    register_family("naive", _single("naive"))
    register_family("hybrid", _hybrid)
    for name in ("sparse", "bundled", "coactivation", "coactivation-path",
                 "coactivation-friend"):
        register_family(name, _single(name))
    for name in ("windowed", "windowed+bundled", "windowed+coactivation",
                 "windowed+coactivation-path", "windowed+coactivation-friend"):
        register_family(name, _windowed(name))
    for pattern in ("sparse", "dense"):
        register_family(f"mmap-{pattern}", _mmap(pattern))


_register_defaults()
