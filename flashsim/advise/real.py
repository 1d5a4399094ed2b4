"""`advise --validate`: the top configurations read on the real disk, predicted vs measured.

The validation's replay (validation.measure) reads each configuration's plan from its store
(in the store folder, named by placement digest; built there with `build_stores`), the configurations'
blocks of tokens interleaved as in `flashsim validate`, so the disk's drift hits all alike.
Measured is the I/O; memory and compute stay the models' (the replay does no decode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..validation.measure import measure_rows
from ..validation.predict import predict_token_s
from ..validation.schedule import schedule
from ..validation.setup import Setup
from ..validation.spec import spec_from_options
from ..validation.stores import open_stores
from .advise import Advice


def validate_top(advice: Advice, trace: Any, profile: Any, *, store: str | Path,
                 top: int = 3, tokens: int | None = 64, reps: int = 3,
                 model_dir: str | Path | None = None, build_stores: bool = False,
                 reader_engine: str = "auto",
                 allow_page_cache: bool = False, quiet: bool = True) -> pd.DataFrame:
    """Predicted and measured I/O ms/token of the `top` ranked configurations (distinct
    configuration and merge gap, each at its best QD) on the first `tokens` generated tokens
    (`reps` repetitions; a token's time is their median)."""
    rows = advice.distinct().head(top).to_dict(orient="records")
    planned = [advice.planned_of(r) for r in rows]
    spec = spec_from_options([r["config"] for r in rows], [r["queue_depth"] for r in rows],
                             {"store": store, "profile": profile, "model_dir": model_dir,
                              "build_stores": build_stores, "reps": reps, "tokens": tokens,
                              "reader_engine": reader_engine,
                              "allow_page_cache": allow_page_cache, "quiet": quiet,
                              "which": advice.info["set"]})
    head = trace.head(spec.tokens)
    layouts = [p.layout for p in planned]
    plans = [lay.plan(head, which=spec.which) for lay in layouts]
    stores = open_stores(spec, head, layouts, plans)
    keys = [(i, int(r["queue_depth"])) for i, r in enumerate(rows)]
    setup = Setup(head, layouts, plans, stores.stores, stores.folder, keys)
    measured = measure_rows(spec, setup, schedule(keys, setup.n_tokens, spec.reps))
    out = []
    for (i, q), row, p, plan in zip(keys, rows, planned, plans):
        meas = np.median(measured.io_s[(i, q)], axis=0)
        pred = np.median(predict_token_s(plan, profile, q, spec.reps), axis=0)
        rest_ms = float(np.mean(p.mem_s) + np.mean(p.compute_s)) * 1e3
        out.append({"rank": row["rank"], "config": row["config"],
                    "merge_gap": row["merge_gap"], "queue_depth": q,
                    "predicted_io_ms": float(pred.mean()) * 1e3,
                    "measured_io_ms": float(meas.mean()) * 1e3,
                    "error_pct": 100.0 * (pred.mean() / meas.mean() - 1.0),
                    "mem_compute_ms": rest_ms,
                    "predicted_total_ms": float(pred.mean()) * 1e3 + rest_ms,
                    "measured_total_ms": float(meas.mean()) * 1e3 + rest_ms})
    frame = pd.DataFrame(out)
    best = frame["measured_total_ms"].min()
    frame["vs_best_measured_pct"] = 100.0 * (frame["measured_total_ms"] / best - 1.0)
    return frame
