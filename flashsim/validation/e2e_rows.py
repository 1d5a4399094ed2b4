"""The model side and the report rows of an end-to-end run: each row's plan simulated with
the device profile and the memory and compute models, and per part (io, mem, compute,
total) measured vs predicted with `rows.row_stats`' statistics (per token the median over
repetitions, then error p50, error of the p99, bias, noise floor)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cost.run import simulate_plan
from ..cost.wait_cost import PROFILE, DecodeWaitCost
from ..layout.plan import IOPlan
from .e2e_measure import PARTS
from .predict import predict_token_s
from .rows import row_stats


@dataclass
class EndToEndResult:
    """Rows (one per layout × QD), per-token times per part, and how the run was set up."""

    rows: list[dict[str, Any]]
    per_token: dict[tuple[str, int], dict[str, dict[str, np.ndarray]]]
    """(layout, QD) → part → {"measured_s": [reps, tokens], "predicted_s": [draws or 1, tokens]}."""
    info: dict[str, Any] = field(default_factory=dict)


def part_stats(part: str, measured_s: np.ndarray, predicted_s: np.ndarray) -> dict[str, Any]:
    """`row_stats` of one part, its keys named by the part: measured_{part}_ms_p50, …,
    {part}_error_p50_pct, {part}_error_p99_pct, {part}_bias_pct, {part}_noise_p50_pct."""
    out = {}
    for key, value in row_stats(np.atleast_2d(measured_s), predicted_s).items():
        if key.startswith(("measured_io_ms", "predicted_io_ms")):
            out[key.replace("_io_ms", f"_{part}_ms")] = value
        else:
            out[f"{part}_{key}"] = value
    return out


def predict_parts_s(plan: IOPlan, params: Any, queue_depth: int, draws: int, engine: str,
                    simulate_options: dict[str, Any],
                    wait_cost: DecodeWaitCost | str | None = PROFILE
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Predicted seconds per part and the simulator's summary.

    mem, compute: the simulator's per-token values ([tokens]). io: the device model in
    `draws` passes ([draws, tokens], each pass its own per-read draws, as `validate` does:
    the real side is a median over repetitions, so the model's is a median over passes).
    total: the simulator's total with its one-pass I/O replaced by each pass's I/O.
    `wait_cost`: the decode's compute after its batches (default: the profile's, if measured;
    None: none)."""
    frame, summary = simulate_plan(plan, params, queue_depth, engine, **simulate_options,
                                   wait_cost=wait_cost)
    rest = (frame["total_ms"] - frame["io_ms"]).to_numpy() * 1e-3
    # a layer's memory management and compute between its batches (a throttle renews then)
    gaps = np.repeat((rest / plan.n_layers)[:, None], plan.n_layers, axis=1)
    io = predict_token_s(plan, params, queue_depth, draws, engine, interleaved=True,
                         gaps_s=gaps)
    return {"io": io, "mem": frame["mem_ms"].to_numpy() * 1e-3,
            "compute": frame["compute_ms"].to_numpy() * 1e-3,
            "total": io + rest[None, :]}, summary


def plain_errors(measured_s: dict[str, np.ndarray], predicted_s: dict[str, np.ndarray],
                 prefix: str = "plain") -> dict[str, float]:
    """Each part's error p50 of another prediction (`plain`: without the decode's wait
    cost), keyed `{prefix}_{part}_error_p50_pct`."""
    return {f"{prefix}_{part}_error_p50_pct": part_stats(part, measured_s[part],
                                                      predicted_s[part])[f"{part}_error_p50_pct"]
            for part in PARTS}


def end_to_end_row(name: str, queue_depth: int, plan: IOPlan, gap: dict[str, Any],
                   measured_s: dict[str, np.ndarray], predicted_s: dict[str, np.ndarray],
                   gaps_s: np.ndarray) -> dict[str, Any]:
    """One report row: the plan's read counts, every part's statistics, the batch gap."""
    row: dict[str, Any] = {"layout": name, "queue_depth": int(queue_depth), **gap,
                           "n_tokens": plan.n_tokens, "reps": int(measured_s["io"].shape[0]),
                           "reads_per_token": float(plan.reads_per_token().mean()),
                           "bytes_per_token": float(plan.bytes_per_token().mean())}
    for part in PARTS:
        row.update(part_stats(part, measured_s[part], predicted_s[part]))
    row["batch_gap_us_p50"] = float(np.median(gaps_s)) * 1e6
    return row


def cost_models(summary: dict[str, Any]) -> dict[str, Any]:
    """What the simulator's summary says about the memory and compute models it used
    (its `*_model`, `*_source` and `*_bytes_per_s` keys)."""
    return {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in summary.items()
            if k.endswith(("_model", "_source", "_bytes_per_s"))}
