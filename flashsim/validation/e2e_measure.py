"""The real side of an end-to-end run: the sparse decode of the prompt from each layout's
store (`loader.runtime.generate_from_flash`, FFN rows read with O_DIRECT at the row's QD),
its per-token parts (I/O, memory, compute, total), the trace of that very decode and the
check that the layout's plan of it is exactly what the decode read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..geometry import NeuronSets
from ..layout.base import Layout
from ..layout.plan import IOPlan
from ..loader.runtime import Generation, generate_from_flash
from ..model.checkpoint import Checkpoint
from ..progress import progress
from ..trace.format import ActivationTrace
from .e2e_setup import EndToEndSetup
from .e2e_spec import EndToEndSpec
from .schedule import RowKey, Slot

PARTS = ("io", "mem", "compute", "total")
"""The per-token parts the runtime measures and the simulator predicts (ms in both)."""


def decode(spec: EndToEndSpec, setup: EndToEndSetup, key: RowKey) -> Generation:
    """One real decode of row `key`: the prompt and `spec.tokens` tokens, reads recorded."""
    i, q = key
    return generate_from_flash(setup.stores[i].path, setup.layouts[key],
                               model_dir=spec.model_dir, prompt_text=setup.prompt_text,
                               n_tokens=spec.tokens, queue_depth=q, seed=spec.seed,
                               top_p=spec.top_p, allow_page_cache=spec.allow_page_cache,
                               record_reads=True)


def decode_trace(gen: Generation, ckpt: Checkpoint, spec: EndToEndSpec) -> ActivationTrace:
    """The ActivationTrace of the decode `gen`: its fed tokens and predicted sets (the flash
    decode computes exactly the predicted neurons, so they stand as the active sets too)."""
    meta = {"synthetic": False, "source": "flashsim.loader.runtime (sparse decode from flash)",
            "model": ckpt.spec.name, "model_sha256": ckpt.weights_sha256,
            "sampling": "greedy" if spec.top_p is None else "nucleus", "top_p": spec.top_p,
            "seed": int(spec.seed), "prompt_source": spec.prompt_source,
            "prompt_tokens": int(gen.n_prompt_tokens), "generated_tokens": int(spec.tokens)}
    return ActivationTrace(ckpt.geometry, np.asarray(gen.token_ids, np.int32),
                           gen.n_prompt_tokens, gen.predicted, gen.predicted, meta)


def check_reads(plan: IOPlan, reads: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]],
                n_prompt_tokens: int, row: str) -> None:
    """RuntimeError unless every (token, layer) batch of `plan` is exactly what the decode
    read there (recorded reads are keyed by fed position: prompt tokens come first)."""
    for t in range(plan.n_tokens):
        for layer in range(plan.n_layers):
            got = reads.get((n_prompt_tokens + t, layer))
            want = plan.batch_reads(t, layer)
            if got is None or not (np.array_equal(got[0], want[0])
                                   and np.array_equal(got[1], want[1])):
                n_got = "no" if got is None else len(got[0])
                raise RuntimeError(
                    f"{row}: the decode's reads of token {t} layer {layer} ({n_got} reads) "
                    f"differ from the plan's ({len(want[0])} reads): the plan is not what "
                    "the runtime read")


def neuron_sets_equal(a: NeuronSets, b: NeuronSets) -> bool:
    return bool(np.array_equal(a.ptr, b.ptr) and np.array_equal(a.ids, b.ids))


def same_decode(a: ActivationTrace, b: ActivationTrace) -> bool:
    """Whether two decodes fed the same tokens and predicted the same neurons."""
    if not np.array_equal(a.token_ids, b.token_ids) or a.n_prompt_tokens != b.n_prompt_tokens:
        return False
    return all(neuron_sets_equal(x, y) for x, y in zip(a.predicted, b.predicted))


def token_parts_s(gen: Generation) -> dict[str, np.ndarray]:
    """Per generated token, seconds: the runtime's io, mem, compute and total."""
    return {p: np.array([r[f"{p}_ms"] for r in gen.per_token]) * 1e-3 for p in PARTS}


def batch_gaps_s(gen: Generation, n_layers: int) -> tuple[np.ndarray, str]:
    """Per generated token, the device's idle time before each of its layer batches (s),
    and how it was obtained.

    With per-batch stamps from the runtime (`batch_times_s`: (fed position, layer) →
    (start, end) of the batch's read) the median over the token's batches of start −
    the previous batch's end, in time order. Without them the token's mean: (total − I/O)
    / n_layers. In a continuous decode everything outside the reads (predictor, attention,
    FFN, row copies, sampling) is the device's idle time, and it is split among the batches."""
    stamps = getattr(gen, "batch_times_s", None)
    if stamps:
        keys = sorted(stamps, key=lambda k: stamps[k][0])
        start = np.array([stamps[k][0] for k in keys])
        end = np.array([stamps[k][1] for k in keys])
        gap = np.zeros(len(keys))
        gap[1:] = start[1:] - end[:-1]
        pos = np.array([k[0] for k in keys])
        first = gen.n_prompt_tokens
        per = [np.median(gap[pos == first + t]) for t in range(len(gen.per_token))]
        return np.array(per), "runtime batch stamps: median of a token's batch gaps"
    parts = token_parts_s(gen)
    return (parts["total"] - parts["io"]) / n_layers, "derived: (total - io) / n_layers"


@dataclass
class EndToEndMeasured:
    """Per row and part, [reps, n_tokens] seconds; per row the batch gaps; the reference
    decode's trace (every repetition's decode equals it) and each row's plan of it."""

    parts_s: dict[RowKey, dict[str, np.ndarray]]
    gaps_s: dict[RowKey, np.ndarray]
    gap_method: str
    trace: ActivationTrace
    plans: dict[RowKey, IOPlan]
    o_direct: bool


BeforeDecode = Callable[[Slot], None]
"""Called before each slot's decode (the calibration part of that moment)."""


def reference_decode(spec: EndToEndSpec, setup: EndToEndSetup
                     ) -> tuple[ActivationTrace, dict[RowKey, IOPlan], bool]:
    """An untimed decode of the first row: the trace every repetition must reproduce, each
    row's plan of it (checked against its store), and whether O_DIRECT was in force. It also
    pays the first-touch costs (files, reader, compiled loops) before any timed decode."""
    key = setup.keys[0]
    gen = decode(spec, setup, key)
    trace = decode_trace(gen, setup.ckpt, spec)
    plans = {k: setup.layouts[k].plan(trace) for k in setup.keys}
    check_reads(plans[key], gen.reads, gen.n_prompt_tokens, row_name(setup, key))
    for (i, _q), plan in plans.items():
        setup.stores[i].check_plan(plan, model_sha256=setup.ckpt.weights_sha256)
    return trace, plans, bool(gen.summary["o_direct"])


def row_name(setup: EndToEndSetup, key: RowKey) -> str:
    return f"{setup.names[key[0]]} QD{key[1]}"


def record(out: EndToEndMeasured, slot: Slot, gen: Generation, setup: EndToEndSetup,
           spec: EndToEndSpec, layout: Layout) -> None:
    """Check one decode (same tokens and sets as the reference, plan = reads) and keep it."""
    name = row_name(setup, slot.key)
    trace = decode_trace(gen, setup.ckpt, spec)
    if not same_decode(trace, out.trace):
        raise RuntimeError(f"{name} rep {slot.rep}: the decode fed other tokens or predicted "
                           "other neurons than the reference decode (same seed)")
    check_reads(layout.plan(trace), gen.reads, gen.n_prompt_tokens, name)
    for part, values in token_parts_s(gen).items():
        out.parts_s[slot.key][part][slot.rep] = values
    gaps, out.gap_method = batch_gaps_s(gen, setup.ckpt.geometry.n_layers)
    out.gaps_s[slot.key][slot.rep] = gaps
    out.o_direct = out.o_direct and bool(gen.summary["o_direct"])


def measure_decodes(spec: EndToEndSpec, setup: EndToEndSetup, slots: list[Slot],
                    reference: tuple[ActivationTrace, dict[RowKey, IOPlan], bool],
                    before: BeforeDecode | None = None) -> EndToEndMeasured:
    """Every slot's decode in order (each after `before`), checked against the
    `reference_decode`."""
    trace, plans, o_direct = reference
    shape = (spec.reps, spec.tokens)
    parts: dict[RowKey, dict[str, Any]] = {k: {p: np.zeros(shape) for p in PARTS}
                                           for k in setup.keys}
    out = EndToEndMeasured(parts, {k: np.zeros(shape) for k in setup.keys}, "", trace, plans,
                           o_direct)
    for slot in progress(slots, total=len(slots), desc="end-to-end", quiet=spec.quiet):
        if before is not None:
            before(slot)
        gen = decode(spec, setup, slot.key)
        record(out, slot, gen, setup, spec, setup.layouts[slot.key])
    return out
