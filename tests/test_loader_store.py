"""Weight store: the file holds exactly what the placement says; plans read exactly those bytes;
bad input (other model/layout, truncated file, no room) is a one-line error, nothing left."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import namedtuple

import numpy as np
import pytest

pytestmark = pytest.mark.torch
pytest.importorskip("torch", reason="the tiny test model is built with transformers")

from flashsim.cli import main  # noqa: E402
from flashsim.errors import InputError  # noqa: E402
from flashsim.io import reader as reader_mod  # noqa: E402
from flashsim.io.reader import DirectReader  # noqa: E402
from flashsim.layout.registry import make_layout  # noqa: E402
from flashsim.loader.store import WeightStore, build_store, index_path  # noqa: E402
from flashsim.model.checkpoint import load_checkpoint  # noqa: E402
from flashsim.trace.capture import capture_trace  # noqa: E402
from opt_builders import build_random_opt, random_predictors  # noqa: E402

TEXT = ("The interpreter reads a line of input, evaluates it and prints the result. "
        "Modules can import other modules, and functions may be nested inside classes. ") * 20
LAYOUTS = ["naive", "hybrid", "sparse", "bundled", "windowed", "windowed+bundled",
           "coactivation", "coactivation-friend", "windowed+coactivation"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = build_random_opt(tmp_path_factory.mktemp("store") / "m", fp16=True,
                              tokenizer_text=TEXT, max_pos=128)
    random_predictors(2, 64, 256, threshold=0.5).save(folder / "predictors.safetensors")
    ref = capture_trace(folder, "The interpreter reads a line", 24, seed=1, quiet=True)
    train = capture_trace(folder, "Modules can import other modules", 48, seed=2, quiet=True)
    return namedtuple("M", "folder ckpt ref train")(folder, load_checkpoint(folder), ref, train)


def expected_file(placement, ckpt) -> bytes:
    """The file a placement describes, built neuron by neuron (independent of the store code)."""
    out = bytearray(placement.file_bytes)
    row = placement.row_bytes
    for l, w in enumerate(ckpt.layers):
        fc1 = w.fc1_w.astype(np.float16)
        fc2 = w.fc2_t.astype(np.float16)
        for i in range(placement.geometry.d_ffn):
            a, b = int(placement.fc1_offset_bytes[l, i]), int(placement.fc2_offset_bytes[l, i])
            out[a:a + row] = fc1[i].tobytes()
            out[b:b + row] = fc2[i].tobytes()
    for l, i, a, b in zip(*(x.tolist() for x in placement.copies())):
        out[a:a + row] = ckpt.layers[l].fc1_w[i].astype(np.float16).tobytes()
        out[b:b + row] = ckpt.layers[l].fc2_t[i].astype(np.float16).tobytes()
    return bytes(out)


@pytest.mark.disk
@pytest.mark.parametrize("name", LAYOUTS)
def test_store_file_and_plan_reads_are_exact(model, tmp_path, name):
    layout = make_layout(name, train_trace=model.train)
    store = build_store(model.ckpt, layout, tmp_path / "w.ffn")
    placement = layout.placement(model.ckpt.geometry)
    want = expected_file(placement, model.ckpt)
    data = (tmp_path / "w.ffn").read_bytes()
    assert len(data) == placement.file_bytes and data == want
    index = json.loads(index_path(tmp_path / "w.ffn").read_text())
    for entry in index["layers"]:
        lo, n = entry["offset_bytes"], entry["length_bytes"]
        assert hashlib.sha256(want[lo:lo + n]).hexdigest() == entry["sha256"]
    assert WeightStore.open(store.path).verify() == []
    # a random selection of the plan's batches, read with O_DIRECT at QD 1 and 8
    plan = layout.plan(model.ref)
    store.check_plan(plan, model_sha256=model.ref.meta["model_sha256"])
    rng = np.random.default_rng(0)
    with DirectReader(store.path) as reader:
        for b in rng.choice(plan.n_tokens * plan.n_layers, size=6, replace=False):
            t, l = divmod(int(b), plan.n_layers)
            off, length = plan.batch_reads(t, l)
            if len(off) == 0:
                continue
            for qd in (1, 8):
                got = reader.read_batch(off, length, qd, return_data=True).data.tobytes()
                expect = b"".join(want[o:o + n] for o, n in zip(off.tolist(), length.tolist()))
                assert hashlib.sha256(got).digest() == hashlib.sha256(expect).digest()


@pytest.mark.disk
def test_every_predicted_neuron_of_a_sparse_plan_is_in_its_reads(model, tmp_path):
    layout = make_layout("windowed+bundled")
    build_store(model.ckpt, layout, tmp_path / "w.ffn")
    plan = layout.plan(model.ref)
    placement = layout.placement(model.ckpt.geometry)
    row = placement.row_bytes
    from flashsim.layout.window import run_window
    loads = run_window(model.ref.predicted[1], 256, model.ref.n_prompt_tokens, 5).loads
    t = 3
    off, length = plan.batch_reads(t, 1)
    with DirectReader(tmp_path / "w.ffn") as reader:
        data = reader.read_batch(off, length, 4, return_data=True).data.tobytes()
    starts = np.concatenate([[0], np.cumsum(length)[:-1]])
    for i in loads[t]:
        a = int(placement.fc1_offset_bytes[1, i])
        r = int(np.searchsorted(off, a, side="right") - 1)
        pos = int(starts[r] + a - off[r])
        assert data[pos:pos + row] == model.ckpt.layers[1].fc1_w[i].astype(np.float16).tobytes()
        assert data[pos + row:pos + 2 * row] == \
            model.ckpt.layers[1].fc2_t[i].astype(np.float16).tobytes()


@pytest.mark.disk
def test_bad_reads_in_a_plan_are_rejected_before_any_io(model, tmp_path, monkeypatch):
    layout = make_layout("bundled")
    store = build_store(model.ckpt, layout, tmp_path / "w.ffn")
    plan = layout.plan(model.ref)
    calls = []
    real = os.preadv
    with DirectReader(store.path) as reader:
        monkeypatch.setattr(reader_mod.os, "preadv", lambda *a: calls.append(a) or real(*a))
        off, length = plan.batch_reads(0, 0)
        for bad_off, bad_len, what in ((off + 512, length, "not aligned"),
                                       (off, length - 100, "not aligned"),
                                       (off + store.file_bytes, length, "outside")):
            with pytest.raises(InputError, match=what):
                reader.read_batch(bad_off, bad_len, 8)
        assert calls == []
    plan.offset_bytes[0] += 512
    with pytest.raises(InputError, match="not aligned"):
        plan.validate()


def _run(capsys, argv):
    capsys.readouterr()  # drop earlier output (model building)
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_build_and_verify(model, tmp_path, capsys):
    out_file = tmp_path / "b.ffn"
    code, out, _ = _run(capsys, ["store", "build", "--model", str(model.folder), "--layout",
                                 "bundled", "--out", str(out_file), "--json"])
    assert code == 0
    payload = json.loads(out)
    placement = make_layout("bundled").placement(model.ckpt.geometry)
    assert payload["file_bytes"] == placement.file_bytes == out_file.stat().st_size
    assert payload["placement"]["digest"] == placement.digest()
    code, out, _ = _run(capsys, ["store", "verify", str(out_file), "--json"])
    assert code == 0 and json.loads(out)["ok"] is True
    with open(out_file, "r+b") as f:  # flip one weight byte
        f.seek(placement.fc1_offset_bytes[1, 7])
        byte = f.read(1)
        f.seek(placement.fc1_offset_bytes[1, 7])
        f.write(bytes([byte[0] ^ 0xFF]))
    code, out, _ = _run(capsys, ["store", "verify", str(out_file), "--json"])
    assert code == 1 and json.loads(out)["bad_layers"] == [1]


def test_store_of_another_layout_or_model_is_refused(model, tmp_path, capsys):
    sparse = build_store(model.ckpt, make_layout("sparse"), tmp_path / "s.ffn")
    with pytest.raises(InputError, match="placement"):
        sparse.check_plan(make_layout("bundled").plan(model.ref))
    # the same bytes serve windowed (same placement as sparse)
    sparse.check_plan(make_layout("windowed").plan(model.ref))
    other = build_random_opt(tmp_path / "other", fp16=True, d_ffn=128, tokenizer_text=TEXT)
    small = build_store(load_checkpoint(other), make_layout("bundled"), tmp_path / "o.ffn")
    with pytest.raises(InputError, match="store holds"):
        small.check_plan(make_layout("bundled").plan(model.ref))
    ref = tmp_path / "ref.trace"
    model.ref.save(ref)
    code, _, err = _run(capsys, ["export-fio", "--trace", str(ref), "--layout", "bundled",
                                 "--store", str(sparse.path), "--out", str(tmp_path / "fio")])
    assert code == 2 and err.count("\n") == 1 and "placement" in err
    assert not (tmp_path / "fio").exists()


def test_truncated_store_is_refused(model, tmp_path, capsys):
    store = build_store(model.ckpt, make_layout("bundled"), tmp_path / "t.ffn")
    with open(store.path, "r+b") as f:
        f.truncate(store.file_bytes - 4096)
    with pytest.raises(InputError, match="truncated"):
        WeightStore.open(store.path)
    code, _, err = _run(capsys, ["store", "verify", str(store.path)])
    assert code == 2 and err.count("\n") == 1 and "truncated" in err
    index_path(store.path).unlink()
    with pytest.raises(InputError, match="no index"):
        WeightStore.open(store.path)


def test_no_room_on_disk_leaves_nothing(model, tmp_path, capsys, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(1 << 30, (1 << 30) - 4096, 4096))
    out_file = tmp_path / "full.ffn"
    code, _, err = _run(capsys, ["store", "build", "--model", str(model.folder), "--layout",
                                 "bundled", "--out", str(out_file)])
    assert code == 2 and err.count("\n") == 1 and "not enough free disk space" in err
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_leaves_nothing(model, tmp_path, monkeypatch):
    import errno

    import flashsim.loader.store as store_mod

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod, "layer_region_bytes", full)
    with pytest.raises(InputError, match="disk full"):
        build_store(model.ckpt, make_layout("bundled"), tmp_path / "x.ffn")
    assert list(tmp_path.iterdir()) == []
