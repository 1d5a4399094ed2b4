"""Train the per-layer low-rank neuron predictors of opt-mini and report their quality.

1. Collect (residual stream after attention, truly active neurons) pairs by running the
   numpy OPT densely, teacher-forced, over the *training* split of the corpus
   (experiments/train_opt_mini/corpus.py; the same split the model was trained on).
2. Per layer, fit standardize → Linear(d_model, rank) → Linear(rank, d_ffn) with a
   class-weighted ("balanced") BCE loss (torch), then shift the output bias so that, at the
   threshold, recall reaches --target-recall on a validation slice of the training text.
3. Save fp16 weights (`predictors.safetensors`) + `predictors.json` next to the model.
4. Report on held-out text (flashsim/data/text/heldout-eval.txt): per-layer true sparsity,
   recall, extra-load ratio, perplexity and next-token agreement of sparse vs dense decoding
   (teacher-forced), and numpy decode speed. Writes results.json here.

    flock /tmp/flashsim-heavy.lock .venv/bin/python experiments/train_predictors/train.py
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from flashsim.atomic import atomic_write_text  # noqa: E402
from flashsim.data import BUNDLED_MODEL_DIR, TEXT_DIR  # noqa: E402
from flashsim.model.checkpoint import file_sha256  # noqa: E402
from flashsim.model.opt import DenseFFN, OPTModel  # noqa: E402
from flashsim.model.predictor import LayerPredictor, PredictorSet, logit, standardize  # noqa: E402
from flashsim.model.sparse import SparseFFN  # noqa: E402
from flashsim.model.tokenizer import load_tokenizer  # noqa: E402
from flashsim.model.weights import DRAMWeightSource  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=BUNDLED_MODEL_DIR)
    p.add_argument("--train-text", type=Path, default=None,
                   help="training text file (default: the corpus' training split)")
    p.add_argument("--eval-text", type=Path, default=TEXT_DIR / "heldout-eval.txt")
    p.add_argument("--out", type=Path, default=None, help="default: <model>/predictors.safetensors")
    p.add_argument("--results", type=Path, default=HERE / "results.json")
    p.add_argument("--ranks", default="64,64,64,128", help="rank per layer (comma list; one value = all)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--train-tokens", type=int, default=131072)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--eval-tokens", type=int, default=16384)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--pos-weight-power", type=float, default=0.5,
                   help="positive-class weight = (inactive/active)^power (1 = fully balanced)")
    p.add_argument("--speed-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def training_documents_text() -> list[str]:
    """The training split of the opt-mini corpus (never the held-out files)."""
    sys.path.insert(0, str(REPO / "experiments/train_opt_mini"))
    import corpus  # noqa: PLC0415

    return [d.text for d in corpus.split_documents(corpus.load_documents())["train"]]


def token_stream(tokenizer, docs: list[str], bos: int | None) -> np.ndarray:
    """Documents as one id stream, each preceded by BOS (as the model was trained)."""
    def with_bos(ids: list[int]) -> list[int]:  # the tokenizer may already prepend it
        return ids if bos is None or (ids and ids[0] == bos) else [bos] + ids

    parts = [np.asarray(with_bos(e.ids), np.int64) for e in tokenizer.encode_batch(docs)]
    return np.concatenate(parts)


def windows(stream: np.ndarray, seq_len: int, max_tokens: int) -> list[np.ndarray]:
    n = min(len(stream) // seq_len, max(1, max_tokens // seq_len))
    return [stream[i * seq_len:(i + 1) * seq_len] for i in range(n)]


def collect(model: OPTModel, chunks: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer: residual stream after attention [N, d_model] and active masks [N, d_ffn]."""
    ffn = DenseFFN(model.ckpt, record=True)
    xs: list[list[np.ndarray]] = [[] for _ in range(model.spec.n_layers)]
    ys: list[list[np.ndarray]] = [[] for _ in range(model.spec.n_layers)]
    for chunk in chunks:
        model.forward(chunk, None, ffn)
        for layer, rec in ffn.records.items():
            xs[layer].append(rec.resid.astype(np.float32))
            ys[layer].append(rec.mask)
    return [np.concatenate(x) for x in xs], [np.concatenate(y) for y in ys]


def train_layer(x: np.ndarray, y: np.ndarray, rank: int, args: argparse.Namespace,
                seed: int) -> tuple[LayerPredictor, dict]:
    """Fit one low-rank predictor with class-weighted BCE; returns fp16-rounded weights."""
    import torch

    torch.manual_seed(seed)
    d_model, d_ffn = x.shape[1], y.shape[1]
    xt = torch.from_numpy(standardize(x).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    rate = float(y.mean())
    pos_weight = ((1 - rate) / max(rate, 1e-6)) ** args.pos_weight_power
    down = torch.nn.Linear(d_model, rank)
    up = torch.nn.Linear(rank, d_ffn)
    with torch.no_grad():  # start at the layer's base rate per neuron
        up.bias.copy_(torch.logit(yt.mean(0).clamp(1e-4, 1 - 1e-4)))
    params = list(down.parameters()) + list(up.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
    gen = torch.Generator().manual_seed(seed)
    n = len(xt)
    steps = args.epochs * math.ceil(n / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps,
                                                pct_start=0.1)
    losses = []
    for _ in range(args.epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for b in range(0, n, args.batch):
            idx = order[b:b + args.batch]
            loss = loss_fn(up(down(xt[idx])), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        losses.append(total / n)
    pred = LayerPredictor(*(t.detach().numpy().astype(np.float16).astype(np.float32)
                            for t in (down.weight, down.bias, up.weight, up.bias)))
    return pred, {"pos_weight": pos_weight, "train_active_rate": rate, "epoch_loss": losses}


def calibrate(pred: LayerPredictor, x: np.ndarray, y: np.ndarray, threshold: float,
              target_recall: float) -> float:
    """Shift up_b so that recall on (x, y) at `threshold` is `target_recall`; returns the shift."""
    pos = pred.logits(x)[y]
    if len(pos) == 0:
        return 0.0
    shift = logit(threshold) - float(np.quantile(pos, 1.0 - target_recall))
    pred.up_b = (pred.up_b + shift).astype(np.float16).astype(np.float32)
    return shift


def set_metrics(active: np.ndarray, predicted: np.ndarray) -> dict:
    """Recall, extra-load ratio (FP / truly active), FP rate (FP / inactive), sizes."""
    n_active = int(active.sum())
    tp = int((active & predicted).sum())
    fp = int((~active & predicted).sum())
    n_inactive = active.size - n_active
    return {"true_sparsity": 1 - n_active / active.size,
            "predicted_fraction": float(predicted.mean()),
            "recall": tp / n_active if n_active else None,
            "missed_fraction": 1 - tp / n_active if n_active else None,
            "extra_load_ratio": fp / n_active if n_active else None,
            "false_positive_rate": fp / n_inactive if n_inactive else None,
            "predicted_over_active": int(predicted.sum()) / n_active if n_active else None}


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def evaluate(model: OPTModel, preds: PredictorSet, chunks: list[np.ndarray], threshold: float) -> dict:
    """Teacher-forced dense vs sparse on held-out chunks: per-layer predictor metrics in the
    sparse run (true active = ReLU(fc1 x) > 0 on the sparse run's own inputs), perplexity,
    next-token agreement."""
    n_layers = model.spec.n_layers
    dense = DenseFFN(model.ckpt, record=True)
    sparse = SparseFFN(preds, DRAMWeightSource.from_checkpoint(model.ckpt), threshold=threshold,
                       record=True)
    act, prd, dense_act = ([[] for _ in range(n_layers)] for _ in range(3))
    nll_d, nll_s, agree, acc_d, acc_s = [], [], [], [], []
    for chunk in chunks:
        ld = model.forward(chunk, None, dense)
        for layer in range(n_layers):
            dense_act[layer].append(dense.records[layer].mask)
        ls = model.forward(chunk, None, sparse)
        for layer, w in enumerate(model.ckpt.layers):
            rec = sparse.records[layer]
            act[layer].append((rec.x @ w.fc1_w.T + w.fc1_b) > 0)
            prd[layer].append(rec.mask)
        target = chunk[1:]
        lpd, lps = log_softmax(ld[:-1]), log_softmax(ls[:-1])
        rows = np.arange(len(target))
        nll_d.append(-lpd[rows, target])
        nll_s.append(-lps[rows, target])
        agree.append(ld[:-1].argmax(-1) == ls[:-1].argmax(-1))
        acc_d.append(ld[:-1].argmax(-1) == target)
        acc_s.append(ls[:-1].argmax(-1) == target)
    per_layer = []
    for layer in range(n_layers):
        m = set_metrics(np.concatenate(act[layer]), np.concatenate(prd[layer]))
        m["dense_true_sparsity"] = 1 - float(np.concatenate(dense_act[layer]).mean())
        m["layer"] = layer
        per_layer.append(m)
    nd, ns = np.concatenate(nll_d), np.concatenate(nll_s)
    return {"tokens": int(sum(len(c) for c in chunks)), "per_layer": per_layer,
            "perplexity_dense": float(np.exp(nd.mean())),
            "perplexity_sparse": float(np.exp(ns.mean())),
            "next_token_agreement": float(np.concatenate(agree).mean()),
            "top1_accuracy_dense": float(np.concatenate(acc_d).mean()),
            "top1_accuracy_sparse": float(np.concatenate(acc_s).mean())}


def decode_speed(model: OPTModel, preds: PredictorSet, prompt: np.ndarray, n: int,
                 threshold: float) -> dict:
    """Token-by-token greedy decode speed (tokens/s) of the dense and the sparse numpy path."""
    out = {}
    for name, ffn in (("dense", DenseFFN(model.ckpt)),
                      ("sparse", SparseFFN(preds, DRAMWeightSource.from_checkpoint(model.ckpt),
                                           threshold=threshold))):
        cache = model.new_cache(len(prompt) + n)
        t0 = time.perf_counter()
        for tok in prompt:
            logits = model.forward([tok], cache, ffn)
        token = int(logits[-1].argmax())
        for _ in range(n - 1):
            token = int(model.forward([token], cache, ffn)[-1].argmax())
        out[f"{name}_tokens_per_s"] = (len(prompt) + n - 1) / (time.perf_counter() - t0)
    return out


def add_heldout_metrics(sidecar: Path, results: dict) -> None:
    """Put the held-out report (per-layer recall / extra load, perplexity) in predictors.json."""
    data = json.loads(sidecar.read_text())
    h = results["heldout"]
    data["heldout"] = {"eval_text": results["eval_text"], "tokens": h["tokens"],
                       "per_layer": h["per_layer"],
                       **{k: h[k] for k in ("perplexity_dense", "perplexity_sparse",
                                            "next_token_agreement", "top1_accuracy_dense",
                                            "top1_accuracy_sparse")}}
    data["predictor_params_over_ffn"] = results["predictor_params_over_ffn"]
    atomic_write_text(sidecar, json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t_start = time.perf_counter()
    model = OPTModel.load(args.model)
    spec = model.spec
    tok = load_tokenizer(args.model)
    ranks = [int(r) for r in args.ranks.split(",")]
    ranks = ranks * spec.n_layers if len(ranks) == 1 else ranks
    if len(ranks) != spec.n_layers:
        raise SystemExit(f"--ranks needs 1 or {spec.n_layers} values")
    docs = ([args.train_text.read_text()] if args.train_text else training_documents_text())
    seq_len = min(spec.max_positions, 512)
    rng = np.random.default_rng(args.seed)
    all_chunks = windows(token_stream(tok, docs, spec.bos_token_id), seq_len, 10**12)
    picked = rng.permutation(len(all_chunks))[:max(2, args.train_tokens // seq_len)]
    chunks = [all_chunks[i] for i in sorted(picked)]
    n_val = max(1, int(round(len(chunks) * args.val_fraction)))
    print(f"collecting activations: {len(chunks)} windows of {seq_len} training tokens", flush=True)
    xs, ys = collect(model, chunks)
    split = (len(chunks) - n_val) * seq_len
    t_collect = time.perf_counter() - t_start
    layers, train_info = [], []
    for layer in range(spec.n_layers):
        t0 = time.perf_counter()
        pred, info = train_layer(xs[layer][:split], ys[layer][:split], ranks[layer], args,
                                 args.seed + layer)
        info["bias_shift"] = calibrate(pred, xs[layer][split:], ys[layer][split:],
                                       args.threshold, args.target_recall)
        val = set_metrics(ys[layer][split:], pred.logits(xs[layer][split:]) >= logit(args.threshold))
        info.update({"layer": layer, "rank": ranks[layer], "train_s": time.perf_counter() - t0,
                     "validation": val})
        print(f"layer {layer}: rank {ranks[layer]} recall {val['recall']:.3f} "
              f"extra {val['extra_load_ratio']:.3f} ({info['train_s']:.0f}s)", flush=True)
        layers.append(pred)
        train_info.append(info)
    del xs, ys
    meta = {"model": spec.name, "model_sha256": model.ckpt.weights_sha256,
            "trained_on": "training split of experiments/train_opt_mini/corpus.py"
            if args.train_text is None else str(args.train_text),
            "train_tokens": split, "validation_tokens": len(chunks) * seq_len - split,
            "target_recall": args.target_recall, "seed": args.seed}
    preds = PredictorSet(layers, args.threshold, meta)
    out = args.out or (args.model / "predictors.safetensors")
    preds.save(out, report={"training": train_info})
    preds = PredictorSet.load(out)  # evaluate exactly what was shipped (fp16)
    t_train = time.perf_counter() - t_start

    eval_docs = [p for p in args.eval_text.read_text().split("\n\n") if p.strip()]
    eval_stream = token_stream(tok, ["\n\n".join(eval_docs)], spec.bos_token_id)
    eval_chunks = windows(eval_stream, seq_len, args.eval_tokens)
    print(f"evaluating on {len(eval_chunks)} held-out windows", flush=True)
    report = evaluate(model, preds, eval_chunks, args.threshold)
    report["decode_speed"] = decode_speed(model, preds, eval_stream[:128], args.speed_tokens,
                                          args.threshold)
    n_params = sum(p.down_w.size + p.down_b.size + p.up_w.size + p.up_b.size for p in layers)
    ffn_params = spec.n_layers * (2 * spec.d_ffn * spec.d_model + spec.d_ffn + spec.d_model)
    results = {"model": spec.name, "model_sha256": model.ckpt.weights_sha256,
               "predictors_sha256": file_sha256(out), "ranks": ranks,
               "threshold": args.threshold, "target_recall": args.target_recall,
               "predictor_params": int(n_params),
               "predictor_params_over_ffn": n_params / ffn_params,
               "eval_text": str(args.eval_text.relative_to(REPO)) if args.eval_text.is_relative_to(REPO)
               else str(args.eval_text),
               "heldout": report, "training": train_info,
               "collect_s": t_collect, "train_total_s": t_train,
               "total_s": time.perf_counter() - t_start,
               "args": {k: str(v) for k, v in vars(args).items()},
               "machine": {"python": platform.python_version(), "numpy": np.__version__,
                           "torch": torch.__version__, "cpu": platform.processor() or platform.machine()}}
    atomic_write_text(args.results, json.dumps(results, indent=2) + "\n")
    add_heldout_metrics(out.with_suffix(".json"), results)
    for m in report["per_layer"]:
        print(f"layer {m['layer']}: sparsity {m['true_sparsity']:.3f} recall {m['recall']:.3f} "
              f"extra {m['extra_load_ratio']:.3f} fp_rate {m['false_positive_rate']:.4f}")
    print(f"perplexity dense {report['perplexity_dense']:.2f} sparse {report['perplexity_sparse']:.2f}"
          f" agreement {report['next_token_agreement']:.4f}; speed {report['decode_speed']}")
    print(f"total {results['total_s']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
