"""Calibrate what a decode from flash pays in compute for waiting on its reads
(`cost.wait_cost`) from real decodes: the runtime decodes the calibration text (not a
validation prompt) from the stores at a few (layout, QD) rows, and per generated token its
compute is compared with the compute model of a decode from DRAM at the same neurons and
context; the difference is fitted (least absolute deviations, both coefficients ≥ 0) as a
cost per non-empty batch plus a cost per second of I/O waited. What the decode's batches
take beyond the device model (with the profile's after-compute cost) is reported beside it.

The rows default to a long wait (sparse, QD 1) and a short one (windowed+bundled, QD 32),
so the two compute terms are told apart. Their decodes run between the measured decodes,
one per row and repetition (`WaitRounds`): the difference of two CPU timings is only as
good as their sharing the same minutes (decoded all after the measured decodes, one run's
fit came out 340 µs a batch where others gave 20).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cost.compute import calibrate_compute
from ..cost.compute_decode import CALIBRATION_TEXT
from ..cost.robust import lad_fit
from ..cost.simulate import context_tokens, io_seconds_draws
from ..cost.wait_cost import DecodeWaitCost
from ..layout.plan import IOPlan
from ..loader.runtime import Generation, generate_from_flash
from ..loader.store import store_for
from ..trace.format import ActivationTrace
from .e2e_measure import check_reads, decode_trace, token_parts_s
from .e2e_setup import EndToEndSetup, cut_text, gap_params, row_layout
from .e2e_spec import EndToEndSpec
from .schedule import Slot

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


@dataclass
class WaitDecode:
    """One decode of the calibration text: its plan, per (token, layer) `read_batch` wall
    time and per token its compute (s)."""

    plan: IOPlan
    io_s: np.ndarray
    compute_s: np.ndarray


def row_samples(decodes: list[WaitDecode], name: str, qd: int, params: Any,
                compute_model: Any, engine: str) -> dict[str, Any]:
    """Per token of the row's decodes: the extra compute over the DRAM compute model and
    its drivers (non-empty batches, I/O seconds), and the I/O beyond the device model's
    (diagnostic)."""
    io_extra, comp_extra, batches, io_waited = [], [], [], []
    for d in decodes:
        nonempty = d.plan.reads_per_batch() > 0
        modelled_io = np.median(io_seconds_draws(d.plan, params, qd, SIM_DRAWS, engine,
                                                 interleaved=True), axis=0)
        io_extra.append((d.io_s - modelled_io).sum(axis=1))
        computed = d.plan.computed_neurons if d.plan.computed_neurons is not None \
            else d.plan.neurons_loaded
        comp_extra.append(d.compute_s - compute_model.seconds(computed, context_tokens(d.plan)))
        batches.append(nonempty.sum(axis=1).astype(np.float64))
        io_waited.append((d.io_s * nonempty).sum(axis=1))
    return {"layout": name, "queue_depth": qd, "io_extra_s": np.concatenate(io_extra),
            "compute_extra_s": np.concatenate(comp_extra), "batches": np.concatenate(batches),
            "io_waited_s": np.concatenate(io_waited)}


@dataclass
class WaitRounds:
    """The wait calibration of a run: in every repetition one decode of the calibration
    text per `spec.wait_rows` row, spread between the row blocks (so the decodes meet the
    machine in the same minutes as the measured ones), fitted at the end."""

    spec: EndToEndSpec
    setup: EndToEndSetup
    text: str
    rows: list[tuple[str, int, Any, Any]]  # (layout name, QD, layout, store)
    decodes: list[list[WaitDecode]] = field(default_factory=list)  # per row

    @classmethod
    def for_run(cls, spec: EndToEndSpec, setup: EndToEndSetup,
                train_trace: ActivationTrace | None = None) -> WaitRounds:
        # as long a prompt as the measured decodes', so the contexts match
        text, _ = cut_text(CALIBRATION_TEXT.read_text(encoding="utf-8"), spec, setup.ckpt,
                           setup.n_prompt_tokens)
        rows = []
        for name, q in spec.wait_rows:
            layout, _ = row_layout(spec, gap_params(spec), name, int(q), train_trace)
            rows.append((name, int(q), layout,
                         store_for(setup.ckpt, layout, setup.folder, build=spec.build_stores)))
        return cls(spec, setup, text, rows, [[] for _ in rows])

    def measure_part(self, slot: Slot) -> None:
        """Row i's decode goes before block (2i + 1) / (2 × rows) of each repetition."""
        j, per_rep = slot.calibration_part
        for i, row in enumerate(self.rows):
            if j == (2 * i + 1) * per_rep // (2 * len(self.rows)):
                self.decodes[i].append(self.decode(*row))

    def decode(self, name: str, qd: int, layout: Any, store: Any) -> WaitDecode:
        spec, ckpt = self.spec, self.setup.ckpt
        gen = generate_from_flash(store.path, layout, model_dir=spec.model_dir,
                                  prompt_text=self.text, n_tokens=spec.tokens, queue_depth=qd,
                                  seed=spec.seed, top_p=spec.top_p,
                                  allow_page_cache=spec.allow_page_cache, record_reads=True)
        plan = layout.plan(decode_trace(gen, ckpt, spec))
        check_reads(plan, gen.reads, gen.n_prompt_tokens, f"wait calibration {name} QD{qd}")
        return WaitDecode(plan, batch_io_s(gen, plan.n_tokens, ckpt.geometry.n_layers),
                          token_parts_s(gen)["compute"])

    def fit(self, params: Any, compute_model: Any = None) -> DecodeWaitCost:
        """The wait cost of every round's decodes against the DRAM `compute_model` (None:
        `simulate`'s)."""
        spec = self.spec
        compute_model = compute_model or calibrate_compute(self.setup.ckpt.geometry)
        rows = [row_samples(self.decodes[i], name, q, params, compute_model,
                            spec.model_engine) for i, (name, q, _, _) in enumerate(self.rows)]
        source = f"decodes from flash of {CALIBRATION_TEXT.name} at " \
            + ", ".join(f"{n} QD {q}" for n, q in spec.wait_rows) \
            + " between the measured ones"
        return fit_wait_cost(rows, source, {"text": CALIBRATION_TEXT.name,
                                            "tokens": spec.tokens, "reps": spec.reps})


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
