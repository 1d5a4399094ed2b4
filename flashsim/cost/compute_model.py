"""The compute cost model: the decode's parts, each a function of what drives it (see
`flashsim.cost.compute` for the formula and its calibrations)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PartCost:
    """One part of the decode: seconds = const_s + per_neuron_s · n + per_context_s · context,
    charged once per token (`per` "token") or per layer ("layer"; "ffn": layers with n > 0)."""

    name: str
    per: str
    const_s: float
    per_neuron_s: float = 0.0
    per_context_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "per": self.per, "const_s": self.const_s,
                "per_neuron_s": self.per_neuron_s, "per_context_s": self.per_context_s}


@dataclass(frozen=True)
class ComputeModel:
    """Per-token compute seconds from neurons per [token, layer] and the token's context."""

    fixed_s_per_layer: float
    s_per_neuron: float
    source: str = "calibrated numpy matvec timings"
    s_per_context_token: float = 0.0  # per layer and token attended
    fixed_s_per_token: float = 0.0
    ffn_fixed_s_per_layer: float = 0.0  # in layers whose FFN computes at least one neuron
    parts: tuple[PartCost, ...] = field(default=(), compare=False)

    def seconds(self, computed_neurons: np.ndarray,
                context_tokens: np.ndarray | None = None) -> np.ndarray:
        """Per-token compute seconds from computed neurons [n_tokens, n_layers] and the
        tokens each token attends to [n_tokens] (None: the context term left out)."""
        n = np.asarray(computed_neurons, dtype=np.float64)
        per_layer = self.fixed_s_per_layer + self.s_per_neuron * n
        if self.ffn_fixed_s_per_layer:
            per_layer = per_layer + self.ffn_fixed_s_per_layer * (n > 0)
        if context_tokens is not None and self.s_per_context_token:
            ctx = np.asarray(context_tokens, dtype=np.float64).reshape(-1, 1)
            per_layer = per_layer + self.s_per_context_token * ctx
        return per_layer.sum(axis=1) + self.fixed_s_per_token

    @classmethod
    def from_parts(cls, parts: list[PartCost], source: str) -> ComputeModel:
        """The model whose terms are the sums of the parts' terms."""
        def total(per: str, attr: str) -> float:
            return float(sum(getattr(p, attr) for p in parts if p.per == per))
        return cls(fixed_s_per_layer=total("layer", "const_s"),
                   s_per_neuron=total("ffn", "per_neuron_s") + total("layer", "per_neuron_s"),
                   source=source,
                   s_per_context_token=total("layer", "per_context_s"),
                   fixed_s_per_token=total("token", "const_s"),
                   ffn_fixed_s_per_layer=total("ffn", "const_s"), parts=tuple(parts))

    def to_dict(self) -> dict[str, Any]:
        return {"fixed_s_per_layer": self.fixed_s_per_layer, "s_per_neuron": self.s_per_neuron,
                "s_per_context_token": self.s_per_context_token,
                "fixed_s_per_token": self.fixed_s_per_token,
                "ffn_fixed_s_per_layer": self.ffn_fixed_s_per_layer, "source": self.source,
                "parts": [p.to_dict() for p in self.parts]}

    def to_rates(self) -> dict[str, float]:
        """The terms as flat `compute_*` rates (a sweep's host rates)."""
        return {"compute_fixed_s_per_layer": self.fixed_s_per_layer,
                "compute_s_per_neuron": self.s_per_neuron,
                "compute_s_per_context_token": self.s_per_context_token,
                "compute_fixed_s_per_token": self.fixed_s_per_token,
                "compute_ffn_fixed_s_per_layer": self.ffn_fixed_s_per_layer}

    @classmethod
    def from_rates(cls, rates: dict[str, Any], source: str) -> ComputeModel:
        """The model of flat `compute_*` rates; terms a rate set lacks are 0."""
        get = lambda key: float(rates.get(key) or 0.0)  # noqa: E731
        return cls(get("compute_fixed_s_per_layer"), get("compute_s_per_neuron"), source,
                   s_per_context_token=get("compute_s_per_context_token"),
                   fixed_s_per_token=get("compute_fixed_s_per_token"),
                   ffn_fixed_s_per_layer=get("compute_ffn_fixed_s_per_layer"))
