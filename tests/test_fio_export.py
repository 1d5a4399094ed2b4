"""fio export: the iolog replays exactly the plan's reads; the job has the replay options."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple

import numpy as np
import pytest

pytest.importorskip("torch", reason="the tiny test model is built with transformers")
pytestmark = pytest.mark.disk  # builds stores on this disk; fio reads them with O_DIRECT

from flashsim.cli import main  # noqa: E402
from flashsim.errors import InputError  # noqa: E402
from flashsim.layout.registry import make_layout  # noqa: E402
from flashsim.loader.store import build_store  # noqa: E402
from flashsim.model.checkpoint import load_checkpoint  # noqa: E402
from flashsim.trace.capture import capture_trace  # noqa: E402
from flashsim.validation.fio_export import export_fio, parse_iolog, run_fio  # noqa: E402
from opt_builders import build_random_opt, random_predictors  # noqa: E402

TEXT = ("The interpreter reads a line of input, evaluates it and prints the result. "
        "Modules can import other modules, and functions may be nested inside classes. ") * 20


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("fio")
    folder = build_random_opt(root / "m", fp16=True, tokenizer_text=TEXT, max_pos=128)
    random_predictors(2, 64, 256, threshold=0.5).save(folder / "predictors.safetensors")
    ref = capture_trace(folder, "The interpreter reads a line", 10, seed=1, quiet=True)
    ref.save(root / "ref.trace")
    return namedtuple("M", "root folder ckpt ref")(root, folder, load_checkpoint(folder), ref)


@pytest.mark.parametrize("name", ["naive", "sparse", "windowed+bundled"])
def test_iolog_replays_the_plans_exact_reads(model, tmp_path, name):
    layout = make_layout(name)
    store = build_store(model.ckpt, layout, tmp_path / "w.ffn")
    plan = layout.plan(model.ref)
    info = export_fio(plan, tmp_path / "out", 16, target=store.path.resolve())
    files, off, length = parse_iolog((tmp_path / "out" / "plan.iolog").read_text())
    assert off.tolist() == plan.offset_bytes.tolist()
    assert length.tolist() == plan.length_bytes.tolist()
    assert set(files) == {str(store.path.resolve())}
    assert info["reads"] == plan.n_reads and info["bytes"] == int(plan.length_bytes.sum())
    job = (tmp_path / "out" / "plan.fio").read_text().splitlines()
    for line in ("direct=1", "iodepth=16", "replay_no_stall=1", "read_iolog=plan.iolog",
                 "ioengine=libaio"):
        assert line in job


def test_cli_export_with_target_for_another_machine(model, tmp_path, capsys):
    layout = make_layout("bundled")
    store = build_store(model.ckpt, layout, tmp_path / "b.ffn")
    capsys.readouterr()
    code = main(["export-fio", "--trace", str(model.root / "ref.trace"), "--layout", "bundled",
                 "--store", str(store.path), "--out", str(tmp_path / "x"), "--qd", "4",
                 "--ioengine", "io_uring", "--target", "/mnt/nvme/b.ffn", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)["queue_depth"] == 4
    files, off, _ = parse_iolog((tmp_path / "x" / "plan.iolog").read_text())
    assert set(files) == {"/mnt/nvme/b.ffn"}
    assert off.tolist() == layout.plan(model.ref).offset_bytes.tolist()
    assert "ioengine=io_uring" in (tmp_path / "x" / "plan.fio").read_text()


def test_parse_rejects_other_files():
    with pytest.raises(InputError, match="version 2 iolog"):
        parse_iolog("fio version 3 iolog\n")


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def test_fio_runs_the_plan(model, tmp_path):
    layout = make_layout("windowed+bundled")
    store = build_store(model.ckpt, layout, tmp_path / "w.ffn")
    plan = layout.plan(model.ref)
    got = run_fio(plan, store.path, tmp_path / "run", 4, min_reads=500)
    assert np.isfinite(got["fio_ms_per_token"]) and got["fio_ms_per_token"] > 0
    assert got["fio_mb_s"] > 0
