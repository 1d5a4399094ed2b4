"""Bad checkpoint folders are one-line errors (exit 2 via the CLI); good ones load fully."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.torch
pytest.importorskip("torch", reason="the train extra (torch) is installed in CI")

from flashsim.cli import main  # noqa: E402
from flashsim.errors import InputError  # noqa: E402
from flashsim.model.checkpoint import load_checkpoint  # noqa: E402
from opt_builders import build_random_opt, edit_config  # noqa: E402


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return build_random_opt(tmp_path_factory.mktemp("good") / "m", fp16=True)


def copy(good, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(good, folder)
    return folder


def rewrite_tensors(folder, change):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


def cli_error(folder, capsys) -> str:
    code = main(["model", "info", "--model", str(folder)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("flashsim: error: ")
    return err


def test_good_checkpoint_loads_fp16_geometry(good, capsys):
    ckpt = load_checkpoint(good)
    g = ckpt.geometry
    assert (g.n_layers, g.d_model, g.d_ffn, g.dtype_bytes) == (2, 64, 256, 2)
    assert ckpt.layers[0].fc1_w.dtype == np.float32
    assert ckpt.lm_head is ckpt.embed_tokens  # tied head
    assert main(["model", "info", "--model", str(good), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["d_ffn"] == 256 and out["ffn_bytes"] == 2 * 2 * 256 * 64 * 2
    assert len(out["weights_sha256"]) == 64


def test_missing_tensor(good, tmp_path, capsys):
    folder = copy(good, tmp_path)
    rewrite_tensors(folder, lambda t: t.pop("model.decoder.layers.1.fc2.weight"))
    with pytest.raises(InputError, match="layers.1.fc2.weight: tensor is missing"):
        load_checkpoint(folder)
    assert "fc2.weight" in cli_error(folder, capsys)


def test_wrong_shape(good, tmp_path, capsys):
    folder = copy(good, tmp_path)

    def shrink(t):
        t["model.decoder.layers.0.fc1.weight"] = t["model.decoder.layers.0.fc1.weight"][:100]
    rewrite_tensors(folder, shrink)
    err = cli_error(folder, capsys)
    assert "shape [100, 64]" in err and "[256, 64]" in err


def test_not_opt(good, tmp_path, capsys):
    folder = copy(good, tmp_path)
    edit_config(folder, model_type="llama")
    assert "not an OPT model" in cli_error(folder, capsys)


def test_not_relu(good, tmp_path, capsys):
    folder = copy(good, tmp_path)
    edit_config(folder, activation_function="gelu")
    assert "activation_function" in cli_error(folder, capsys)


def test_pickle_only_says_how_to_convert(good, tmp_path, capsys):
    folder = copy(good, tmp_path)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    err = cli_error(folder, capsys)
    assert "pytorch_model.bin" in err and "safe_serialization=True" in err


def test_missing_folder_and_config(tmp_path, capsys):
    assert "does not exist" in cli_error(tmp_path / "nope", capsys)
    (tmp_path / "empty").mkdir()
    assert "config.json" in cli_error(tmp_path / "empty", capsys)


def test_decoder_prefix_and_sharded_index(good, tmp_path):
    """OPTModel-style keys (`decoder.` prefix) in a two-shard safetensors index."""
    from safetensors.numpy import load_file, save_file

    folder = copy(good, tmp_path)
    tensors = {k.removeprefix("model."): v
               for k, v in load_file(str(folder / "model.safetensors")).items()}
    names = sorted(tensors)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, half in enumerate(halves):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: tensors[k] for k in half}, str(folder / shard))
        weight_map.update({k: shard for k in half})
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    a, b = load_checkpoint(good), load_checkpoint(folder)
    assert np.array_equal(a.layers[1].fc2_t, b.layers[1].fc2_t)
    assert np.array_equal(a.embed_positions, b.embed_positions)
