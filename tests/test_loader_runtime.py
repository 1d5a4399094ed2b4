"""Inference from flash: same tokens as the in-DRAM sparse decode, the same reads as the plan,
the paper's memory management by hand, the generate CLI."""

from __future__ import annotations

import json
from collections import namedtuple

import numpy as np
import pytest

pytest.importorskip("torch", reason="the tiny test model is built with transformers")

from flashsim.cli import main  # noqa: E402
from flashsim.errors import InputError  # noqa: E402
from flashsim.layout.registry import make_layout  # noqa: E402
from flashsim.loader.runtime import LayerCache, generate_from_flash  # noqa: E402
from flashsim.loader.store import build_store  # noqa: E402
from flashsim.model.checkpoint import load_checkpoint  # noqa: E402
from flashsim.trace.capture import capture_trace  # noqa: E402
from flashsim.trace.format import ActivationTrace  # noqa: E402
from opt_builders import build_random_opt, random_predictors  # noqa: E402

TEXT = ("The interpreter reads a line of input, evaluates it and prints the result. "
        "Modules can import other modules, and functions may be nested inside classes. ") * 20
PROMPT = "The interpreter reads a line"
N_TOKENS = 16


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = build_random_opt(tmp_path_factory.mktemp("rt") / "m", fp16=True,
                              tokenizer_text=TEXT, max_pos=128)
    random_predictors(2, 64, 256, threshold=0.5).save(folder / "predictors.safetensors")
    ref = capture_trace(folder, PROMPT, N_TOKENS, seed=7, quiet=True)
    train = capture_trace(folder, "Modules can import other modules", 40, seed=2, quiet=True)
    return namedtuple("M", "folder ckpt ref train")(folder, load_checkpoint(folder), ref, train)


@pytest.mark.parametrize("name", ["sparse", "bundled", "windowed", "windowed+bundled",
                                  "coactivation-friend", "windowed+coactivation"])
def test_flash_decode_equals_dram_decode_and_reads_the_plan(model, tmp_path, name):
    layout = make_layout(name, train_trace=model.train)
    store = build_store(model.ckpt, layout, tmp_path / "w.ffn")
    gen = generate_from_flash(store.path, layout, model_dir=model.folder, prompt_text=PROMPT,
                              n_tokens=N_TOKENS, queue_depth=8, seed=7, record_reads=True)
    ref = model.ref
    assert gen.n_prompt_tokens == ref.n_prompt_tokens
    assert gen.generated_ids.tolist() == ref.token_ids[ref.n_prompt_tokens:].tolist()
    # the runtime's predicted sets are the trace's; its reads are the plan's, batch by batch
    for l in range(2):
        assert np.array_equal(gen.predicted[l].ids, ref.predicted[l].ids)
    plan = layout.plan(ref)
    for t in range(plan.n_tokens):
        for l in range(plan.n_layers):
            off, length = gen.reads[(ref.n_prompt_tokens + t, l)]
            p_off, p_len = plan.batch_reads(t, l)
            assert off.tolist() == p_off.tolist() and length.tolist() == p_len.tolist()
    assert sum(r["bytes_read"] for r in gen.per_token) == int(plan.length_bytes.sum())
    assert sum(r["neurons_loaded"] for r in gen.per_token) == int(plan.neurons_loaded.sum())
    for r in gen.per_token:
        assert r["io_ms"] >= 0 and r["mem_ms"] >= 0 and r["total_ms"] > 0


def test_memory_management_overwrites_leaving_rows_with_the_last_ones():
    cache = LayerCache(d_ffn=16, d_model=1, capacity=8)
    ids = np.array([5, 7, 9, 11])
    cache.append(ids, np.array([[5, -5], [7, -7], [9, -9], [11, -11]], np.float32))
    keep = np.ones(16, bool)
    keep[7] = False
    assert cache.delete(keep) == 1  # one row moved: 11 fills 7's hole
    assert cache.slot[:cache.n_used].tolist() == [5, 11, 9]
    assert cache.matrix[1].tolist() == [11, -11] and cache.pos[11] == 1 and cache.pos[7] == -1
    keep[9] = False  # the last row leaves: nothing moves, the matrix is cut
    assert cache.delete(keep) == 0 and cache.slot[:cache.n_used].tolist() == [5, 11]
    cache.append(np.array([2]), np.array([[2, -2]], np.float32))
    assert cache.slot[:cache.n_used].tolist() == [5, 11, 2] and cache.matrix[2].tolist() == [2, -2]
    assert cache.resident().tolist() == [2, 5, 11]


def test_store_of_another_layout_is_refused(model, tmp_path):
    store = build_store(model.ckpt, make_layout("sparse"), tmp_path / "s.ffn")
    with pytest.raises(InputError, match="store has layout"):
        generate_from_flash(store.path, make_layout("bundled"), model_dir=model.folder,
                            prompt_text=PROMPT, n_tokens=2)


def test_generate_cli(model, tmp_path, capsys):
    layout = make_layout("windowed+bundled", window=3)
    store = build_store(model.ckpt, layout, tmp_path / "wb.ffn")
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT)
    capsys.readouterr()
    code = main(["generate", "--model", str(model.folder), "--layout", "windowed+bundled",
                 "--window", "3", "--store", str(store.path), "--qd", "4", "--prompt-file",
                 str(prompt), "--tokens", str(N_TOKENS), "--seed", "7", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    payload = json.loads(out)
    assert payload["generated_ids"] == model.ref.token_ids[model.ref.n_prompt_tokens:].tolist()
    assert payload["window"] == 3 and len(payload["tokens"]) == N_TOKENS
    for key in ("io_ms_p50", "mem_ms_p50", "compute_ms_p50", "total_ms_p50"):
        assert np.isfinite(payload[key]) and payload[key] >= 0
    code = main(["generate", "--model", str(model.folder), "--store", str(store.path),
                 "--prompt-file", str(tmp_path / "none.txt")])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "prompt file does not exist" in err


def test_trace_of_the_run_replans_identically(model, tmp_path):
    """A trace built from what the runtime predicted gives the same plan as the reference."""
    layout = make_layout("windowed+bundled")
    store = build_store(model.ckpt, layout, tmp_path / "w.ffn")
    gen = generate_from_flash(store.path, layout, model_dir=model.folder, prompt_text=PROMPT,
                              n_tokens=N_TOKENS, queue_depth=2, seed=7)
    own = ActivationTrace(model.ref.geometry, gen.token_ids, gen.n_prompt_tokens,
                          gen.predicted, gen.predicted, {"synthetic": False})
    a, b = layout.plan(own), layout.plan(model.ref)
    assert np.array_equal(a.offset_bytes, b.offset_bytes)
    assert np.array_equal(a.batch_ptr, b.batch_ptr)
