"""Calibrate what a decode from flash pays in compute for waiting on its reads
(`cost.wait_cost`) from real decodes: the runtime decodes the calibration text (not a
validation prompt) from the stores at a few (layout, QD) rows, and per generated token its
compute is compared with the compute model of a decode from DRAM at the same neurons and
context; the difference is fitted (least absolute deviations, both coefficients ≥ 0) as a
cost per non-empty batch plus a cost per second of I/O waited. What the decode's batches
take beyond the device model (with the profile's after-compute cost) is reported beside it.

The rows default to a long wait (sparse, QD 1) and a short one (windowed+bundled, QD 32),
so the two compute terms are told apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..cost.compute import calibrate_compute
from ..cost.compute_decode import CALIBRATION_TEXT
from ..cost.robust import lad_fit
from ..cost.simulate import context_tokens, io_seconds_draws
from ..cost.wait_cost import DecodeWaitCost
from ..loader.runtime import Generation, generate_from_flash
from ..loader.store import store_for
from ..trace.format import ActivationTrace
from .e2e_measure import check_reads, decode_trace, token_parts_s
from .e2e_setup import EndToEndSetup, cut_text, gap_params, row_layout
from .e2e_spec import EndToEndSpec

WAIT_REPS = 2
"""Decodes per calibration row."""
SIM_DRAWS = 5
"""Device-model passes whose median per batch stands for the back-to-back time."""


def batch_io_s(gen: Generation, n_tokens: int, n_layers: int) -> np.ndarray:
    """The decode's `read_batch` wall time per (generated token, layer), seconds."""
    first = gen.n_prompt_tokens
    out = np.zeros((n_tokens, n_layers))
    for t in range(n_tokens):
        for layer in range(n_layers):
            start, end = gen.batch_times_s[(first + t, layer)]
            out[t, layer] = end - start
    return out


def row_samples(spec: EndToEndSpec, setup: EndToEndSetup, params: Any, compute_model: Any,
                name: str, qd: int, text: str, train_trace: ActivationTrace | None
                ) -> dict[str, Any]:
    """Decode the calibration text WAIT_REPS times at (name, qd): per token the extra
    compute over the DRAM compute model and its drivers (non-empty batches, I/O seconds),
    and the I/O beyond the device model's (diagnostic)."""
    layout, _ = row_layout(spec, gap_params(spec), name, qd, train_trace)
    store = store_for(setup.ckpt, layout, setup.folder, build=spec.build_stores)
    n_layers = setup.ckpt.geometry.n_layers
    io_extra, comp_extra, batches, io_waited = [], [], [], []
    for _ in range(WAIT_REPS):
        gen = generate_from_flash(store.path, layout, model_dir=spec.model_dir,
                                  prompt_text=text, n_tokens=spec.tokens, queue_depth=qd,
                                  seed=spec.seed, top_p=spec.top_p,
                                  allow_page_cache=spec.allow_page_cache, record_reads=True)
        plan = layout.plan(decode_trace(gen, setup.ckpt, spec))
        check_reads(plan, gen.reads, gen.n_prompt_tokens, f"wait calibration {name} QD{qd}")
        nonempty = plan.reads_per_batch() > 0
        measured_io = batch_io_s(gen, plan.n_tokens, n_layers)
        modelled_io = np.median(io_seconds_draws(plan, params, qd, SIM_DRAWS,
                                                 spec.model_engine, interleaved=True), axis=0)
        io_extra.append((measured_io - modelled_io).sum(axis=1))
        computed = plan.computed_neurons if plan.computed_neurons is not None \
            else plan.neurons_loaded
        dram_s = compute_model.seconds(computed, context_tokens(plan))
        comp_extra.append(token_parts_s(gen)["compute"] - dram_s)
        batches.append(nonempty.sum(axis=1).astype(np.float64))
        io_waited.append((measured_io * nonempty).sum(axis=1))
    return {"layout": name, "queue_depth": qd, "io_extra_s": np.concatenate(io_extra),
            "compute_extra_s": np.concatenate(comp_extra), "batches": np.concatenate(batches),
            "io_waited_s": np.concatenate(io_waited)}


def calibrate_wait_cost(spec: EndToEndSpec, setup: EndToEndSetup, params: Any,
                        train_trace: ActivationTrace | None = None) -> DecodeWaitCost:
    """The decode's wait cost from `spec.wait_rows` decodes of the calibration text."""
    # as long a prompt as the measured decodes', so the contexts match
    text, _ = cut_text(CALIBRATION_TEXT.read_text(encoding="utf-8"), spec, setup.ckpt,
                       setup.n_prompt_tokens)
    compute_model = spec.simulate_options.get("compute_model") \
        or calibrate_compute(setup.ckpt.geometry)
    rows = [row_samples(spec, setup, params, compute_model, name, int(q), text, train_trace)
            for name, q in spec.wait_rows]
    source = f"decodes from flash of {CALIBRATION_TEXT.name} at " \
        + ", ".join(f"{n} QD {q}" for n, q in spec.wait_rows)
    return fit_wait_cost(rows, source, {"text": CALIBRATION_TEXT.name, "tokens": spec.tokens,
                                        "reps": WAIT_REPS})


def fit_wait_cost(rows: list[dict[str, Any]], source: str,
                  info: dict[str, Any] | None = None) -> DecodeWaitCost:
    """The wait cost of `row_samples` rows: the extra compute fitted per batch and per second
    waited (least absolute deviations, ≥ 0)."""
    x = np.column_stack([np.concatenate([r["batches"] for r in rows]),
                         np.concatenate([r["io_waited_s"] for r in rows])])
    per_batch, per_io = lad_fit(x, np.concatenate([r["compute_extra_s"] for r in rows]))
    calibration = {**(info or {}), "rows": [
        {"layout": r["layout"], "queue_depth": r["queue_depth"],
         "io_beyond_model_ms_p50": float(np.median(r["io_extra_s"])) * 1e3,
         "compute_extra_ms_p50": float(np.median(r["compute_extra_s"])) * 1e3,
         "io_waited_ms_p50": float(np.median(r["io_waited_s"])) * 1e3} for r in rows]}
    return DecodeWaitCost(float(per_batch), float(per_io), source, calibration)
