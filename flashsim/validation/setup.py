"""What a validation run reads: the trace cut to its tokens, each layout's plan on it, the
store each plan is read from, and the rows (layout × queue depth)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..layout.base import Layout
from ..layout.plan import IOPlan
from ..layout.registry import make_layout
from ..loader.store import WeightStore
from ..trace.format import ActivationTrace
from .schedule import RowKey
from .spec import ValidationSpec
from .stores import open_stores


@dataclass(frozen=True)
class Setup:
    """The plans of a run and their stores; row (i, q) is layout i at queue depth q."""

    trace: ActivationTrace
    layouts: list[Layout]
    plans: list[IOPlan]
    stores: list[WeightStore]
    folder: Path
    keys: list[RowKey]

    @property
    def n_tokens(self) -> int:
        return self.plans[0].n_tokens


def prepare(spec: ValidationSpec, trace: ActivationTrace,
            train_trace: ActivationTrace | None = None) -> Setup:
    """Cut the trace, plan every layout on it, and open (or build) the stores."""
    trace = trace.head(spec.tokens)
    layouts = [make_layout(n, train_trace=train_trace) for n in spec.layouts]
    plans = [lay.plan(trace, which=spec.which) for lay in layouts]
    stores = open_stores(spec, trace, layouts, plans)
    keys = [(i, q) for i in range(len(plans)) for q in spec.qds]
    return Setup(trace, layouts, plans, stores.stores, stores.folder, keys)
