"""Co-activation paths vs clustering vs bundled: reads/token and I/O time per token.

    .venv/bin/python experiments/coactivation_paths/run.py   # writes results.json here

Orders learned on the bundled training trace (opt-mini-train), judged on the reference trace
(opt-mini-ref), predicted set; simulated with the fast device model at QD 32 on two device
profiles, merge gap 0 (paper-literal) and auto (the device's break-even gap at QD 32).
Memory and compute are left out: the orders differ only in what is read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from flashsim.cost.simulate import io_seconds
from flashsim.data import REFERENCE_TRACE, TRAINING_TRACE
from flashsim.device import load_params
from flashsim.device.gap import resolve_merge_gap
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace

HERE = Path(__file__).resolve().parent
DEVICES = ("local-virtio", "m1max-paper")
QD = 32
LAYOUTS = ("bundled", "coactivation", "coactivation-path",
           "windowed+bundled", "windowed+coactivation", "windowed+coactivation-path")


def rows_for(device: str, ref: ActivationTrace, train: ActivationTrace) -> list[dict]:
    params = load_params(device)
    out = []
    for setting in ("0", "auto"):
        gap = resolve_merge_gap(setting, params, QD, 4096)
        for name in LAYOUTS:
            layout = make_layout(name, train_trace=train, merge_gap_bytes=gap.gap_bytes)
            plan = layout.plan(ref)
            io_ms = io_seconds(plan, params, QD).sum(axis=1) * 1e3
            out.append({"device": Path(device).stem, "merge_gap": setting,
                        "merge_gap_bytes": gap.gap_bytes, "layout": name,
                        "order_method": getattr(layout, "order_method", None),
                        "reads_per_token": float(plan.reads_per_token().mean()),
                        "mb_per_token": float(plan.bytes_per_token().mean()) / 1e6,
                        "io_ms_mean": float(io_ms.mean()),
                        "io_ms_p50": float(sorted(io_ms)[len(io_ms) // 2])})
    return out


def main() -> None:
    ref, train = ActivationTrace.load(REFERENCE_TRACE), ActivationTrace.load(TRAINING_TRACE)
    learn = {}
    for method in ("cluster", "path"):  # learning alone (4 layers of 1024 neurons)
        t0 = time.process_time()
        make_layout("coactivation", order_method=method, train_trace=train).placement(
            ref.geometry)
        learn[method] = time.process_time() - t0
    rows = [r for device in DEVICES for r in rows_for(device, ref, train)]
    payload = {"trace": "opt-mini-ref", "train_trace": "opt-mini-train", "queue_depth": QD,
               "set": "predicted", "learn_cpu_s": learn, "rows": rows}
    (HERE / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    print("learning the order (CPU s):", {k: round(v, 2) for k, v in learn.items()})
    for r in rows:
        print(f"{r['device']:13s} gap {r['merge_gap']:4s} ({r['merge_gap_bytes']:6d}) "
              f"{r['layout']:28s} reads/tok {r['reads_per_token']:7.1f}  "
              f"MB/tok {r['mb_per_token']:.3f}  I/O ms {r['io_ms_mean']:.3f}")


if __name__ == "__main__":
    main()
