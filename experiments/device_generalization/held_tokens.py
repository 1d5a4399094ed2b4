"""Which tokens the throttle holds back: the measured repetitions against the model's draws.

Reads the kept per-token I/O of the throttled validation (`validation/NAME.npz`), predicts
the same rows again (mode a: the shipped profile, 5 draws) and counts, per row, the tokens
held (over twice the row's median) in any repetition and in at least 3 of 5: where the
kernel spreads its holds over many tokens the per-token median hides them, where the model
holds the same tokens in every draw it does not.

    python experiments/device_generalization/held_tokens.py   # ~30 s, no reads
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from flashsim.data import REFERENCE_TRACE, TRAINING_TRACE
from flashsim.device import make_device
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace
from flashsim.validation.predict import throttled_replay_s

HERE = Path(__file__).resolve().parent
LAYOUTS = ["sparse", "bundled", "windowed+bundled", "coactivation"]


def held(per_token_s: np.ndarray) -> dict[str, float]:
    """Counts of held tokens in (repetitions or draws) × tokens, and the row's statistics."""
    med = float(np.median(per_token_s))
    is_held = per_token_s > 2 * med
    return {"median_ms": med * 1e3, "held_fraction": float(is_held.mean()),
            "tokens_held_in_3_of_5": int((is_held.sum(0) >= 3).sum()),
            "tokens_held_in_any": int((is_held.sum(0) >= 1).sum()),
            "p99_of_token_medians_ms": float(np.percentile(np.median(per_token_s, 0), 99)) * 1e3,
            "mean_ms": float(per_token_s.mean()) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="testbed-throttled-emmc")
    ap.add_argument("--profile", default=None, help="default: the shipped profile NAME")
    ap.add_argument("--out", default=str(HERE / "throttle" / "held_tokens.json"))
    args = ap.parse_args()
    measured = np.load(HERE / "validation" / f"{args.name}.npz")
    device = make_device(args.profile or args.name, "fast")
    trace = ActivationTrace.load(REFERENCE_TRACE)
    train = ActivationTrace.load(TRAINING_TRACE)
    rows = []
    for i, name in enumerate(LAYOUTS):
        for qd in (1, 8, 32):
            real = measured[f"io_{i}_{qd}"]
            plan = make_layout(name, train_trace=train).plan(trace.head(real.shape[1]))
            model = throttled_replay_s(plan, device, qd, real.shape[0])
            rows.append({"layout": name, "queue_depth": qd, "measured": held(real),
                         "model": held(model)})
            m, p = rows[-1]["measured"], rows[-1]["model"]
            print(f"{name:17s} QD {qd:2d}: held {m['held_fraction']:.3f} / "
                  f"{p['held_fraction']:.3f}, tokens held in any repetition "
                  f"{m['tokens_held_in_any']:3d} / {p['tokens_held_in_any']:3d}, in 3 of 5 "
                  f"{m['tokens_held_in_3_of_5']:3d} / {p['tokens_held_in_3_of_5']:3d} "
                  "(measured / model)")
    Path(args.out).write_text(json.dumps({"device": args.name, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
