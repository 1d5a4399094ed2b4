"""Inference from flash: same tokens as the in-DRAM sparse decode, the same reads as the plan
(every sparse layout, with and without a merge gap), refused inputs, the generate CLI."""

from __future__ import annotations

import json
from collections import namedtuple

import numpy as np
import pytest

pytest.importorskip("torch", reason="the tiny test model is built with transformers")
pytestmark = pytest.mark.disk  # reads weight stores with O_DIRECT

from flashsim.cli import main  # noqa: E402
from flashsim.errors import InputError  # noqa: E402
from flashsim.layout.registry import make_layout  # noqa: E402
from flashsim.loader.runtime import generate_from_flash  # noqa: E402
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
    # d_model 256: 512-byte rows, so a layer's reads spread over blocks and a gap merges them
    folder = build_random_opt(tmp_path_factory.mktemp("rt") / "m", fp16=True, d_model=256,
                              tokenizer_text=TEXT, max_pos=128)
    random_predictors(2, 256, 256, threshold=0.5).save(folder / "predictors.safetensors")
    ref = capture_trace(folder, PROMPT, N_TOKENS, seed=7, quiet=True)
    train = capture_trace(folder, "Modules can import other modules", 40, seed=2, quiet=True)
    return namedtuple("M", "folder ckpt ref train")(folder, load_checkpoint(folder), ref, train)


SPARSE_LAYOUTS = ["sparse", "bundled", "windowed", "windowed+bundled", "coactivation",
                  "coactivation-friend", "windowed+coactivation", "windowed+coactivation-friend"]
GAP_64K = 64 * 1024


@pytest.fixture(scope="module")
def stores(model, tmp_path_factory):
    """One store per layout name, built lazily (the merge gap does not change the placement)."""
    folder, built = tmp_path_factory.mktemp("stores"), {}

    def get(name):
        if name not in built:
            layout = make_layout(name, train_trace=model.train)
            built[name] = build_store(model.ckpt, layout, folder / f"{name}.ffn").path
        return built[name]
    return get


@pytest.mark.parametrize("gap", [0, GAP_64K], ids=["gap0", "gap64k"])
@pytest.mark.parametrize("name", SPARSE_LAYOUTS)
def test_flash_decode_equals_dram_decode_and_reads_the_plan(model, stores, name, gap):
    layout = make_layout(name, train_trace=model.train, merge_gap_bytes=gap)
    gen = generate_from_flash(stores(name), layout, model_dir=model.folder, prompt_text=PROMPT,
                              n_tokens=N_TOKENS, queue_depth=8, seed=7, record_reads=True)
    ref = model.ref
    assert gen.n_prompt_tokens == ref.n_prompt_tokens
    assert gen.generated_ids.tolist() == ref.token_ids[ref.n_prompt_tokens:].tolist()
    for l in range(2):  # the runtime predicted what the in-DRAM decode did
        assert np.array_equal(gen.predicted[l].ids, ref.predicted[l].ids)
        assert np.array_equal(gen.predicted[l].ptr, ref.predicted[l].ptr)
    # the plan of the trace of this very decode: the runtime read it, read by read
    own = ActivationTrace(ref.geometry, gen.token_ids, gen.n_prompt_tokens, gen.predicted,
                          gen.predicted, {"synthetic": False})
    plan = layout.plan(own)
    if gap:  # the gap is exercised: it merges reads the gap-0 plan keeps apart
        no_gap = make_layout(name, train_trace=model.train).plan(own)
        assert plan.n_reads < no_gap.n_reads
    for t in range(plan.n_tokens):
        for l in range(plan.n_layers):
            off, length = gen.reads[(own.n_prompt_tokens + t, l)]
            p_off, p_len = plan.batch_reads(t, l)
            assert off.tolist() == p_off.tolist() and length.tolist() == p_len.tolist()
    assert sum(r["bytes_read"] for r in gen.per_token) == int(plan.length_bytes.sum())
    assert sum(r["reads"] for r in gen.per_token) == plan.n_reads
    assert sum(r["neurons_loaded"] for r in gen.per_token) == int(plan.neurons_loaded.sum())
    for r in gen.per_token:
        assert r["io_ms"] >= 0 and r["mem_ms"] >= 0 and r["total_ms"] > 0


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
