"""flashsim: how long does a token take when an LLM's FFN weights live on flash?

A cost model of flash devices (SimPy, calibrated from real measurements), real activation
traces from a sparse OPT, the layouts of "LLM in a flash" (arXiv 2312.11514), and a real
loader that checks the model on a real disk. The public API is listed in `__all__`;
names are imported on first use so `import flashsim` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import InputError
from .units import format_size, parse_size

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily)
_API: dict[str, str] = {
    "ActivationTrace": ".trace.format",
    "ModelGeometry": ".geometry",
    "NeuronSets": ".geometry",
    "capture_trace": ".trace.capture",
    "trace_stats": ".trace.stats",
    "window_stats": ".trace.stats",
    "closest_friends": ".trace.stats",
    "coactivation_summary": ".trace.stats",
    "predictor_stats": ".trace.stats",
    "synthetic_trace": ".trace.synthetic",
    "opt_6_7b_synthetic_trace": ".trace.synthetic",
    "SyntheticRates": ".trace.synthetic",
    "paper_opt_6_7b_rates": ".trace.synthetic",
    "load_checkpoint": ".model.checkpoint",
    "Checkpoint": ".model.checkpoint",
    "OPTSpec": ".model.checkpoint",
    "OPTModel": ".model.opt",
    "DenseFFN": ".model.opt",
    "KVCache": ".model.opt",
    "SparseFFN": ".model.sparse",
    "PredictorSet": ".model.predictor",
    "LayerPredictor": ".model.predictor",
    "FFNWeightSource": ".model.weights",
    "DRAMWeightSource": ".model.weights",
    "sample_top_p": ".model.sampling",
    "greedy": ".model.sampling",
    "bundled_model_dir": ".data",
    "bundled_trace_path": ".data",
    "bundled_trace_names": ".data",
    "bundled_device_path": ".data",
    "bundled_device_names": ".data",
    "DeviceProfile": ".device.profile",
    "DeviceParams": ".device.profile",
    "make_device": ".device",
    "DeviceRun": ".device.base",
    "FlashDevice": ".device.des",
    "FastDevice": ".device.fast",
    "ThrottleInfo": ".device.profile",
    "ThrottledDevice": ".device.throttle",
    "blkio_throttle_of": ".device.throttle",
    "predict_point": ".device.fit",
    "fit_profile": ".device.fit",
    "predict_batch_makespan_us": ".device.fit",
    "calibrate": ".device.calibrate",
    "IOPlan": ".layout.plan",
    "Placement": ".layout.placement",
    "make_layout": ".layout.registry",
    "layout_names": ".layout.registry",
    "COMPARE_ORDER": ".layout.registry",
    "simulate": ".cost.simulate",
    "simulate_layout": ".cost.run",
    "write_results": ".cost.export",
    "DEFAULT_MERGE_GAP": ".device.gap",
    "break_even_gap_bytes": ".device.gap",
    "resolve_merge_gap": ".device.gap",
    "DirectReader": ".io.reader",
    "ReadTimes": ".io.reader",
    "WeightStore": ".loader.store",
    "build_store": ".loader.store",
    "generate_from_flash": ".loader.runtime",
    "FlashWeightSource": ".loader.runtime",
    "validate": ".validation.validate",
    "run_validation": ".validation.validate",
    "validate_end_to_end": ".validation.end_to_end",
    "ValidationSpec": ".validation.spec",
    "export_fio": ".validation.fio_export",
    "run_sweep": ".sweep.api",
    "SweepOutcome": ".sweep.api",
    "load_sweep": ".sweep.spec",
    "read_results": ".sweep.store",
    "run_main": ".sweep.main_job",
    "advise_layouts": ".advise.advise",
    "Advice": ".advise.advise",
    "register_family": ".advise.families",
}

__all__ = ["InputError", "parse_size", "format_size", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'flashsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
