"""Decode speed of the numpy OPT on the bundled model: capture, dense and sparse token by token.

    OPENBLAS_NUM_THREADS=1 flock /tmp/flashsim-heavy.lock .venv/bin/python experiments/train_predictors/speed.py
"""

from __future__ import annotations

import time

from flashsim.data import BUNDLED_PREDICTORS, TEXT_DIR
from flashsim.model.opt import OPTModel
from flashsim.model.predictor import PredictorSet
from flashsim.model.sparse import SparseFFN
from flashsim.model.weights import DRAMWeightSource
from flashsim.trace.capture import capture_trace


def main() -> None:
    text = (TEXT_DIR / "heldout-prompts.txt").read_text()
    capture_trace(None, text, 8, prompt_tokens=8, quiet=True)  # warm-up
    t = time.perf_counter()
    trace = capture_trace(None, text, 256, prompt_tokens=128, quiet=True)
    dt = time.perf_counter() - t
    print(f"capture (sparse decode + dense measurement): {trace.n_tokens} tokens in {dt:.2f}s "
          f"= {trace.n_tokens / dt:.0f} tokens/s")
    model = OPTModel.load()
    preds = PredictorSet.load(BUNDLED_PREDICTORS)
    for name, ffn in (("dense", None),
                      ("sparse", SparseFFN(preds, DRAMWeightSource.from_checkpoint(model.ckpt)))):
        cache = model.new_cache(trace.n_tokens)
        t = time.perf_counter()
        for tok in trace.token_ids:
            model.forward([int(tok)], cache, ffn)
        print(f"{name} numpy decode: {trace.n_tokens / (time.perf_counter() - t):.0f} tokens/s")


if __name__ == "__main__":
    main()
