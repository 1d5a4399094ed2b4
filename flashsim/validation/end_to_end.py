"""End-to-end validation: the real sparse decode from flash against the simulator, per token
and per part (I/O + memory + compute = total).

For every repetition and every row (layout × QD), in an order that rotates between
repetitions (`schedule`, one block per row: a decode cannot be cut into token blocks), the
bundled runtime decodes the prompt with the layout's FFN rows read from its weight store
(O_DIRECT, QD reads in flight) and measures each generated token's parts. The trace of
that very decode is planned with the same layout object (window, merge gap, block), the
plan is checked read by read against what the decode read, and the simulator predicts the
same tokens with the device profile and the memory and compute models. The prompt tokens
are decoded from flash before the timed tokens, so every decode warms its own row up.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cost.wait_cost import PROFILE, DecodeWaitCost
from ..device import make_device
from ..device.drift import scaled as drift_scaled
from ..device.profile import DeviceParams, DeviceProfile
from ..errors import InputError
from ..trace.format import ActivationTrace
from .calibration import Calibration
from .drift_probe import DriftProbe, probe_of
from .e2e_measure import PARTS, EndToEndMeasured, measure_decodes, reference_decode
from .e2e_models import ModelRounds
from .e2e_rows import EndToEndResult, cost_models, end_to_end_row, plain_errors, predict_parts_s
from .e2e_setup import EndToEndSetup, gap_params, prepare
from .e2e_spec import EndToEndSpec, end_to_end_spec
from .predict import given_profile
from .schedule import Slot, schedule
from .wait_calibration import WaitRounds


def read_prompt(prompt_text: str | None, prompt_file: str | os.PathLike | None
                ) -> tuple[str, str | None]:
    """The prompt text and where it came from; exactly one of text or file."""
    if (prompt_text is None) == (prompt_file is None):
        raise InputError("give a prompt text or a prompt file", key="prompt_file",
                         expected="exactly one of prompt_text / --prompt-file")
    if prompt_file is None:
        return str(prompt_text), None
    path = Path(prompt_file)
    if not path.is_file():
        raise InputError("prompt file does not exist", file=path, key="--prompt-file",
                         expected="a text file")
    try:
        return path.read_text(encoding="utf-8"), path.name
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read prompt ({exc.__class__.__name__})", file=path,
                         key="--prompt-file", expected="a UTF-8 text file") from None


def validate_end_to_end(prompt_text: str | None = None, *,
                        prompt_file: str | os.PathLike | None = None,
                        train_trace: ActivationTrace | None = None,
                        **options: Any) -> EndToEndResult:
    """Decode the prompt from flash for every layout × QD, `reps` times, and compare each
    generated token's measured io / mem / compute / total with the simulator's (module doc).

    `options` are `EndToEndSpec`'s fields; a bad value is an InputError naming it. Among
    them: `layouts` (sparse ones), `qds`, `tokens` (generated per decode), `prompt_tokens`
    (cut the prompt), `reps`, `seed`, `top_p`; `store`: the folder of each layout's store
    (`build_stores`: built there when missing); `profile` (a path or object) or `calibrate` (a
    quick profile measured between the decodes, as `validate` does); `merge_gap` (`auto`: the
    profile's break-even gap at each QD, as `simulate`); `simulate_options`: keyword
    arguments for `cost.run.simulate_plan` (the memory and compute models, e.g.
    `memcpy_bytes_per_s`, `compute_model`). `train_trace`: what co-activation layouts learn from.
    """
    text, source = read_prompt(prompt_text, prompt_file)
    spec = end_to_end_spec({"prompt_text": text, "prompt_source": source, **options})
    return run_end_to_end(spec, train_trace)


def run_end_to_end(spec: EndToEndSpec, train_trace: ActivationTrace | None = None
                   ) -> EndToEndResult:
    """The run `spec` describes: stores, decodes (with what is measured between them),
    prediction, rows."""
    gap_params(spec)  # a bad profile fails before any store is built
    setup = prepare(spec, train_trace)
    reference = reference_decode(spec, setup)
    between = Between.for_run(spec, setup, reference, train_trace)
    try:
        measured = measure_decodes(spec, setup, schedule(setup.keys, 1, spec.reps), reference,
                                   between.before)
    finally:
        between.remove_files()
    if between.rounds is not None:  # the models timed over the run's minutes (e2e_models.py)
        spec = spec.model_copy(update={"simulate_options": {**between.rounds.models(),
                                                            **spec.simulate_options}})
    params, device, profile_info = between.device(spec)
    wait_cost = PROFILE if between.wait is None else \
        between.wait.fit(device, spec.simulate_options.get("compute_model"))
    return predicted_result(spec, setup, measured, device, profile_info, wait_cost,
                            undrifted=None if device is params else params)


@dataclass
class Between:
    """What a run measures between its decodes: an in-run device calibration or a drift
    probe of the given profile, the memory and compute models' timing rounds and the wait
    calibration's decodes."""

    calibration: Calibration | None
    probe: DriftProbe | None
    rounds: ModelRounds | None
    wait: WaitRounds | None

    @classmethod
    def for_run(cls, spec: EndToEndSpec, setup: EndToEndSetup,
                reference: tuple[Any, dict, bool],
                train_trace: ActivationTrace | None = None) -> Between:
        calibration, probe = None, None
        if spec.calibrate:
            plans = [reference[1][k] for k in setup.keys]
            calibration = Calibration.target(spec, plans, setup.stores, setup.folder)  # type: ignore[arg-type]
        elif spec.drift_probe:
            probe = probe_of(spec.profile, spec.qds, setup.folder)
        wait = WaitRounds.for_run(spec, setup, train_trace) if spec.wait_calibration else None
        return cls(calibration, probe, ModelRounds.for_run(spec, setup), wait)

    def before(self, slot: Slot) -> None:
        """The measurements that go before `slot`'s decode."""
        if self.calibration is not None:
            self.calibration.measure_part(slot, "auto")
        if self.probe is not None:
            self.probe.measure_part(slot, "auto")
        if self.rounds is not None:
            self.rounds.measure_part(slot)
        if self.wait is not None:
            self.wait.measure_part(slot)

    def remove_files(self) -> None:
        if self.probe is not None:
            self.probe.remove_file()

    def device(self, spec: EndToEndSpec) -> tuple[Any, Any, dict[str, Any]]:
        """The profile's device model, the one the rows are predicted with (scaled by the
        drift probe's factor, if any) and what the report says about the profile."""
        if self.calibration is not None:
            params, info = self.calibration.fit()
        else:
            params, info = given_profile(spec)
        params = make_device(params, spec.model_engine)  # one model for the wait fit and rows
        if self.probe is None:
            return params, params, info
        drift = self.probe.drift()
        info["drift_probe"] = self.probe.info(drift)
        return params, (params if drift is None else drift_scaled(params, drift.factor)), info


def predicted_result(spec: EndToEndSpec, setup: EndToEndSetup, measured: EndToEndMeasured,
                     params: DeviceProfile | DeviceParams, profile_info: dict[str, Any],
                     wait_cost: DecodeWaitCost | str | None = PROFILE,
                     undrifted: Any = None) -> EndToEndResult:
    """Predict every row with the simulator and compare it with `measured`; with a
    `wait_cost` each row also carries the prediction without it (`plain_*` keys), with an
    `undrifted` device (the profile's model before the drift probe's scaling) the
    prediction with that one (`undrifted_*` keys)."""
    rows, per_token, models = [], {}, {}
    params = make_device(params, spec.model_engine)  # one residual for every row
    for key in setup.keys:
        name, q = setup.names[key[0]], key[1]
        plan = measured.plans[key]
        pred, summary = predict_parts_s(plan, params, q, spec.reps, spec.model_engine,
                                        spec.simulate_options, wait_cost)
        models = cost_models(summary)
        row = end_to_end_row(name, q, plan, setup.gaps[key].to_dict(),
                             measured.parts_s[key], pred, measured.gaps_s[key])
        if isinstance(wait_cost, DecodeWaitCost):
            plain, _ = predict_parts_s(plan, params, q, spec.reps, spec.model_engine,
                                       spec.simulate_options, None)
            row.update(plain_errors(measured.parts_s[key], plain))
        if undrifted is not None:
            raw, _ = predict_parts_s(plan, undrifted, q, spec.reps, spec.model_engine,
                                     spec.simulate_options, wait_cost)
            row.update(plain_errors(measured.parts_s[key], raw, prefix="undrifted"))
        rows.append(row)
        per_token[(name, int(q))] = {p: {"measured_s": measured.parts_s[key][p],
                                         "predicted_s": pred[p]} for p in PARTS}
    info = run_info(spec, setup, measured, profile_info, models)
    info["wait_cost"] = wait_cost.to_dict() if isinstance(wait_cost, DecodeWaitCost) else None
    return EndToEndResult(rows, per_token, info)


def run_info(spec: EndToEndSpec, setup: EndToEndSetup, measured: EndToEndMeasured,
             profile_info: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    """How the run was set up: model, prompt, tokens, order, gaps, models, profile, date."""
    gaps = np.concatenate([g.ravel() for g in measured.gaps_s.values()])
    given_models = {k: (v.to_dict() if hasattr(v, "to_dict") else v)
                    for k, v in spec.simulate_options.items()}
    return {"model": setup.ckpt.geometry.name, "prompt_source": spec.prompt_source,
            "prompt_tokens": setup.n_prompt_tokens, "tokens": spec.tokens, "reps": spec.reps,
            "seed": spec.seed, "top_p": spec.top_p, "engine": spec.model_engine,
            "order": "rows rotate with the repetition (schedule.schedule, one block a row)",
            "o_direct": measured.o_direct, "store_folder": str(setup.folder),
            "stores": [str(s.path) for s in setup.stores],
            "batch_gap": {"method": measured.gap_method,
                          "median_us": float(np.median(gaps)) * 1e6},
            "cost_models": {**models, **given_models}, "profile": profile_info,
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
