"""Train opt-mini: a 4-layer OPT-architecture model with sparse (ReLU) FFNs, from scratch on 2 CPU cores.

Builds the corpus (corpus.py), writes the held-out text splits, trains a 4096-token byte-level
BPE, trains OPTForCausalLM with an L1 penalty on the FFN activations (for OPT-like sparsity at
small scale), saves the fp16 HF folder and a JSON of the final metrics measured on the saved
fp16 weights. Deterministic given --seed (fixed data order, seeded init and dropout).

    flock /tmp/flashsim-heavy.lock .venv/bin/python experiments/train_opt_mini/train.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import corpus  # noqa: E402

EOT = "</s>"
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3, as OPT numbers them
PAD_ID, EOT_ID = 1, 2
TEXT_FILES = {"eval": "heldout-eval.txt", "prompts": "heldout-prompts.txt",
              "trace_train": "heldout-train-trace.txt"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "flashsim/data/opt-mini")
    p.add_argument("--text-out", type=Path, default=REPO / "flashsim/data/text")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=8, help="sequences per step")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--l1", type=float, default=0.5, help="coefficient of mean(ReLU(fc1)) in the loss")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--d-ffn", type=int, default=1024)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--snapshot-dir", type=Path, default=None,
                   help="also save an fp16 snapshot here at every eval (a fallback if a run must stop early)")
    p.add_argument("--evaluate-only", action="store_true",
                   help="no training: rewrite the text splits, re-measure the shipped model in --out "
                        "on the eval split and update the held-out numbers in training_metrics.json")
    p.add_argument("--eval-chunks", type=int, default=8, help="held-out chunks used for evals during training")
    return p.parse_args(argv)


def write_text_splits(groups: dict[str, list[corpus.Document]], text_out: Path) -> dict:
    """Write the held-out text files (documents separated by blank lines) and their manifest."""
    from flashsim.atomic import atomic_write_text

    text_out.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"source_package": corpus.DOC_PACKAGE, "source_version": doc_version(),
                      "license": corpus.DOC_LICENSE, "split_salt": corpus.SPLIT_SALT,
                      "heldout_percent": corpus.HELDOUT_PERCENT,
                      "n_train_files": len(groups["train"]),
                      "n_train_chars": sum(len(d.text) for d in groups["train"]), "files": {}}
    for role, name in TEXT_FILES.items():
        docs = groups[role]
        text = "\n\n".join(d.text for d in docs) + "\n"
        atomic_write_text(text_out / name, text)
        (text_out / name).chmod(0o644)
        manifest["files"][name] = {"role": role, "sources": [d.rel_path for d in docs],
                                   "n_chars": len(text),
                                   "sha256": hashlib.sha256(text.encode()).hexdigest()}
    atomic_write_text(text_out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    (text_out / "manifest.json").chmod(0o644)
    return manifest


def doc_version() -> str:
    """Installed version of the Debian doc package (dpkg), or 'unknown'."""
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", corpus.DOC_PACKAGE],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def train_tokenizer(train_docs: list[corpus.Document], vocab: int):
    """A byte-level BPE on the training split only; decodes back to the exact input text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator((d.text for d in train_docs), trainer=trainer, length=len(train_docs))
    assert tok.token_to_id(EOT) == EOT_ID and tok.token_to_id("<pad>") == PAD_ID
    return tok


def encode_stream(tok, docs: list[corpus.Document]) -> np.ndarray:
    """Token ids of the documents, each preceded by the end-of-text token (as OPT prepends </s>)."""
    parts = []
    for enc in tok.encode_batch([d.text for d in docs], add_special_tokens=False):
        parts.append(np.asarray([EOT_ID] + enc.ids, dtype=np.int64))
    return np.concatenate(parts)


def build_model(args: argparse.Namespace):
    from transformers import OPTConfig, OPTForCausalLM

    cfg = OPTConfig(vocab_size=args.vocab, hidden_size=args.d_model, num_hidden_layers=args.layers,
                    ffn_dim=args.d_ffn, num_attention_heads=args.heads,
                    max_position_embeddings=args.seq_len, word_embed_proj_dim=args.d_model,
                    activation_function="relu", do_layer_norm_before=True,
                    dropout=args.dropout, attention_dropout=0.0, activation_dropout=0.0,
                    layerdrop=0.0, init_std=0.02, tie_word_embeddings=True, enable_bias=True,
                    pad_token_id=PAD_ID, bos_token_id=EOT_ID, eos_token_id=EOT_ID)
    return OPTForCausalLM(cfg)


class FFNTap:
    """Forward pre-hooks on every fc2: the ReLU output of fc1, flattened to [tokens, d_ffn]."""

    def __init__(self, model, d_ffn: int) -> None:
        self.d_ffn = d_ffn
        self.acts: list = []
        self.handles = [layer.fc2.register_forward_pre_hook(self._hook)
                        for layer in model.model.decoder.layers]

    def _hook(self, module, inputs):
        self.acts.append(inputs[0].reshape(-1, self.d_ffn))

    def take(self) -> list:
        acts, self.acts = self.acts, []
        return acts


def evaluate(model, tap: FFNTap, ids: np.ndarray, seq_len: int, max_chunks: int | None = None) -> dict:
    """Held-out perplexity and per-layer FFN sparsity (share of ReLU outputs == 0), fp32, no dropout."""
    import torch

    n_chunks = max(1, (len(ids) - 1) // seq_len)
    if max_chunks:
        n_chunks = min(n_chunks, max_chunks)
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    n_layers = len(tap.handles)
    zeros = np.zeros(n_layers)
    ever = [None] * n_layers
    total = 0
    with torch.no_grad():
        for c in range(n_chunks):
            chunk = torch.from_numpy(ids[c * seq_len:(c + 1) * seq_len + 1][None])
            x, y = chunk[:, :-1], chunk[:, 1:]
            logits = model(input_ids=x).logits.float()
            nll += torch.nn.functional.cross_entropy(logits[0], y[0], reduction="sum").item()
            count += y.numel()
            acts = tap.take()
            for l, a in enumerate(acts):
                active = a > 0
                zeros[l] += (~active).sum().item()
                e = active.any(0)
                ever[l] = e if ever[l] is None else (ever[l] | e)
            total += acts[0].shape[0]
    model.train(was_training)
    return {"perplexity": math.exp(nll / count), "n_tokens": count,
            "sparsity": [float(z / (total * tap.d_ffn)) for z in zeros],
            "never_active_fraction": [float(1 - e.float().mean().item()) for e in ever]}


def batches(stream: np.ndarray, seq_len: int, batch: int, rng: np.random.Generator):
    """Endless fixed-order batches: per epoch a seeded random offset and a seeded shuffle of chunks."""
    epoch = 0
    while True:
        off = int(rng.integers(0, seq_len))
        n = (len(stream) - off - 1) // seq_len
        order = rng.permutation(n)
        for b in range(0, n - batch + 1, batch):
            idx = off + order[b:b + batch, None] * seq_len + np.arange(seq_len + 1)[None]
            yield epoch, stream[idx]
        epoch += 1


def lr_at(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def finish_tokenizer_files(folder: Path, max_length: int) -> None:
    """Make `<folder>/tokenizer.json` prepend `</s>` as OPT's tokenizer does, and write the HF tokenizer config.

    Training streams put `</s>` before every document, so an encoded prompt starts the same way.
    """
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{EOT} $A", pair=f"{EOT} $A {EOT} $B", special_tokens=[(EOT, EOT_ID)])
    tok.save(str(folder / "tokenizer.json"))
    fast = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), bos_token=EOT,
                                   eos_token=EOT, pad_token="<pad>", unk_token="<unk>",
                                   model_max_length=max_length)
    fast.save_pretrained(folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # the name transformers 4.x and 5.x both know
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def save_fp16(model, tok, out: Path) -> None:
    """Save the fp16 HF folder (config, safetensors, tokenizer) atomically: temp dir, then rename."""
    from transformers import OPTForCausalLM, PreTrainedTokenizerFast

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".opt-mini-", dir=out.parent))
    import torch

    with torch.random.fork_rng(devices=[]):  # the copy's random init must not shift the training RNG
        half = OPTForCausalLM(model.config)  # a copy, so the fp32 training weights stay untouched
    half.load_state_dict(model.state_dict())
    half.half().save_pretrained(tmp, safe_serialization=True)
    cfg_path = tmp / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["torch_dtype"] = "float16"  # transformers 5 writes "dtype"; 4.x readers look for torch_dtype
    cfg["dtype"] = "float16"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    tok.save(str(tmp / "tokenizer.json"))
    finish_tokenizer_files(tmp, max_length=model.config.max_position_embeddings)
    # keep files not produced here (model card, predictors others ship next to the model)
    if out.exists():
        for keep in out.iterdir():
            if keep.is_file() and not (tmp / keep.name).exists() and keep.name != "training_metrics.json":
                shutil.copy2(keep, tmp / keep.name)
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    out.chmod(0o755)
    for f in out.iterdir():
        f.chmod(0o644)


def reevaluate(args: argparse.Namespace, groups: dict[str, list[corpus.Document]]) -> int:
    """Re-measure the shipped folder on the current eval split; update training_metrics.json."""
    import torch
    from tokenizers import Tokenizer
    from transformers import OPTForCausalLM

    tok = Tokenizer.from_file(str(args.out / "tokenizer.json"))
    eval_ids = encode_stream(tok, groups["eval"])
    shipped = OPTForCausalLM.from_pretrained(args.out, dtype=torch.float32)
    final = evaluate(shipped, FFNTap(shipped, shipped.config.ffn_dim), eval_ids, args.seq_len)
    path = args.out / "training_metrics.json"
    metrics = json.loads(path.read_text())
    metrics["corpus"]["n_eval_tokens"] = int(len(eval_ids))
    metrics.update(heldout_perplexity=final["perplexity"], heldout_eval_tokens=final["n_tokens"],
                   heldout_sparsity=final["sparsity"],
                   heldout_never_active_fraction=final["never_active_fraction"])
    from flashsim.atomic import atomic_write_text
    atomic_write_text(path, json.dumps(metrics, indent=1) + "\n")
    path.chmod(0o644)
    print(f"re-evaluated: heldout ppl {final['perplexity']:.2f} on {final['n_tokens']} tokens, sparsity "
          + " ".join(f"{x:.4f}" for x in final["sparsity"]), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # passive OpenMP waits: spinning threads collapse throughput when other processes share the 2 cores
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    import transformers
    import tokenizers

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)
    t_start = time.time()

    docs = corpus.load_documents()
    groups = corpus.split_documents(docs)
    manifest = write_text_splits(groups, args.text_out)
    if args.evaluate_only:
        return reevaluate(args, groups)
    print(f"corpus: {len(groups['train'])} train files ({manifest['n_train_chars']} chars); "
          + ", ".join(f"{k}: {len(groups[k])} files" for k in corpus.HELDOUT_ROLES), flush=True)

    tok = train_tokenizer(groups["train"], args.vocab)
    train_ids = encode_stream(tok, groups["train"])
    eval_ids = encode_stream(tok, groups["eval"])
    print(f"tokenizer: vocab {tok.get_vocab_size()}, train tokens {len(train_ids)}, "
          f"eval tokens {len(eval_ids)} ({time.time() - t_start:.0f}s)", flush=True)

    model = build_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    tap = FFNTap(model, args.d_ffn)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim == 2 and "embed" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    print(f"model: {n_params} parameters; {args.steps} steps of {args.batch}x{args.seq_len} tokens",
          flush=True)

    history: list[dict] = []
    data = batches(train_ids, args.seq_len, args.batch, rng)
    model.train()
    t_train = time.time()
    t_log, tokens_since, loss_acc, l1_acc, n_acc = t_train, 0, 0.0, 0.0, 0
    epoch = 0
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        epoch, chunk = next(data)
        chunk = torch.from_numpy(chunk)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=chunk[:, :-1]).logits
        acts = tap.take()
        ce = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                               chunk[:, 1:].reshape(-1))
        l1 = torch.stack([a.float().mean() for a in acts]).mean()
        loss = ce + args.l1 * l1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens_since += chunk[:, :-1].numel()
        loss_acc += ce.item()
        l1_acc += l1.item()
        n_acc += 1
        if (step + 1) % args.log_every == 0:
            now = time.time()
            rec = {"step": step + 1, "epoch": epoch, "lr": lr_at(step, args),
                   "train_loss": loss_acc / n_acc, "l1": l1_acc / n_acc,
                   "tokens_per_s": tokens_since / (now - t_log), "elapsed_s": now - t_train}
            t_log, tokens_since, loss_acc, l1_acc, n_acc = now, 0, 0.0, 0.0, 0
            if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
                ev = evaluate(model, tap, eval_ids, args.seq_len, args.eval_chunks)
                rec.update(heldout_perplexity=ev["perplexity"], sparsity=ev["sparsity"])
                if args.snapshot_dir:
                    save_fp16(model, tok, args.snapshot_dir / f"step{step + 1}")
                    model.train()
                t_log = time.time()  # keep eval time out of the throughput
            history.append(rec)
            extra = ""
            if "sparsity" in rec:
                extra = (f" | heldout ppl {rec['heldout_perplexity']:.1f} sparsity "
                         + " ".join(f"{s:.3f}" for s in rec["sparsity"]))
            print(f"step {rec['step']:5d} ep {epoch} lr {rec['lr']:.2e} loss {rec['train_loss']:.3f} "
                  f"l1 {rec['l1']:.4f} {rec['tokens_per_s']:.0f} tok/s {rec['elapsed_s']:.0f}s{extra}",
                  flush=True)
    train_s = time.time() - t_train

    for h in tap.handles:
        h.remove()
    save_fp16(model, tok, args.out)

    # final metrics on the shipped fp16 weights, computed in fp32 (as the numpy runtime does)
    from transformers import OPTForCausalLM
    shipped = OPTForCausalLM.from_pretrained(args.out, dtype=torch.float32)
    final = evaluate(shipped, FFNTap(shipped, args.d_ffn), eval_ids, args.seq_len)
    size = (args.out / "model.safetensors").stat().st_size
    metrics = {
        "model": "opt-mini", "seed": args.seed, "args": {k: (str(v) if isinstance(v, Path) else v)
                                                         for k, v in vars(args).items()},
        "n_parameters": n_params, "safetensors_bytes": size,
        "corpus": {"package": corpus.DOC_PACKAGE, "version": manifest["source_version"],
                   "license": corpus.DOC_LICENSE, "n_train_files": len(groups["train"]),
                   "n_train_tokens": int(len(train_ids)), "n_eval_tokens": int(len(eval_ids)),
                   "epochs_seen": args.steps * args.batch * args.seq_len / len(train_ids)},
        "train_time_s": train_s, "total_time_s": time.time() - t_start,
        "mean_tokens_per_s": args.steps * args.batch * args.seq_len / train_s,
        "heldout_perplexity": final["perplexity"], "heldout_eval_tokens": final["n_tokens"],
        "heldout_sparsity": final["sparsity"],
        "heldout_never_active_fraction": final["never_active_fraction"],
        "eval_file": "flashsim/data/text/" + TEXT_FILES["eval"],
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "tokenizers": tokenizers.__version__, "python": platform.python_version(),
                        "cpu": platform.processor() or platform.machine(), "threads": args.threads},
        "history": history,
    }
    from flashsim.atomic import atomic_write_text
    atomic_write_text(args.out / "training_metrics.json", json.dumps(metrics, indent=1) + "\n")
    print(f"done: heldout ppl {final['perplexity']:.2f}, sparsity "
          + " ".join(f"{s:.4f}" for s in final["sparsity"])
          + f", safetensors {size / 1e6:.2f} MB, train {train_s:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
