"""Testbeds: parsing and refusals anywhere; on a root machine with a cgroup v1 blkio hierarchy
and zram, real devices that are throttled, read with O_DIRECT, and leave nothing behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flashsim.cli import main
from flashsim.device import testbed as tb_mod
from flashsim.device.cgroup import BlkioGroup, blkio_root, disk_of
from flashsim.device.testbed import Testbed, TestbedInterrupted, TestbedState
from flashsim.device.testbed import testbed as make_testbed  # not collected as a test
from flashsim.device.testbed_commands import split_run_args
from flashsim.device.zram import Zram
from flashsim.errors import InputError
from flashsim.io.reader import DirectReader, readable_bytes

# -- parsing, paths and refusals (no root needed) ---------------------------------------


def test_blkio_root_is_found_among_v1_hierarchies(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n"
                      "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,blkio 0 0\n"
                      "cgroup /cg/io\\040x cgroup rw,relatime,blkio 0 0\n")
    assert blkio_root(mounts) == Path("/cg/io x")
    mounts.write_text("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n")
    with pytest.raises(InputError, match="no cgroup v1 blkio"):
        blkio_root(mounts)


def _fake_sys(tmp_path, st_dev):
    """A /sys/dev/block where `st_dev` is partition 1 of a disk vdz (254:0)."""
    disk = tmp_path / "devices" / "vdz"
    part = disk / "vdz1"
    part.mkdir(parents=True)
    (disk / "dev").write_text("254:0\n")
    (part / "dev").write_text("254:1\n")
    (part / "partition").write_text("1\n")
    sys_dev_block = tmp_path / "dev-block"
    sys_dev_block.mkdir()
    (sys_dev_block / f"{os.major(st_dev)}:{os.minor(st_dev)}").symlink_to(part)
    return sys_dev_block


def test_throttle_goes_on_the_whole_disk_under_a_partition(tmp_path):
    sys_dev_block = _fake_sys(tmp_path, os.stat(tmp_path).st_dev)
    assert disk_of(tmp_path, sys_dev_block) == (254, 0, "vdz")
    with pytest.raises(InputError, match="not a block device"):
        disk_of(tmp_path, tmp_path / "nowhere")


def _fake_zram(tmp_path, disksize="0"):
    sys_block = tmp_path / "block"
    (sys_block / "zram0").mkdir(parents=True)
    (sys_block / "zram0" / "disksize").write_text(disksize + "\n")
    (sys_block / "zram0" / "comp_algorithm").write_text("lzo [lz4] zstd\n")
    return Zram("zram0", sys_block=sys_block, dev_dir=tmp_path)


def test_zram_refuses_a_busy_device_and_an_unknown_compressor(tmp_path):
    with pytest.raises(InputError, match="device busy"):
        _fake_zram(tmp_path, "1048576").check_free()
    zram = _fake_zram(tmp_path / "free")
    with pytest.raises(InputError, match="expected one of lzo, lz4, zstd"):
        zram.setup(1 << 20, "brotli")
    zram.setup(1 << 20, "zstd")
    assert (zram.sys / "comp_algorithm").read_text() == "zstd\n"
    assert (zram.sys / "disksize").read_text() == "1048576\n"
    with pytest.raises(InputError, match="did not free"):  # a fake ignores the reset
        zram.reset(timeout_s=0.1)
    _fake_zram(tmp_path / "reset").reset()  # disksize 0: nothing to do


@pytest.mark.parametrize("options, match", [
    ({"size_bytes": 1000}, "multiple of 4096"),
    ({"iops": 0}, "caps"),
    ({"mb_s": -1.0}, "caps"),
])
def test_bad_options_are_refused(tmp_path, options, match):
    with pytest.raises(InputError, match=match):
        Testbed("throttled", dir=tmp_path, state_file=tmp_path / "s.json", **options)
    with pytest.raises(InputError, match="unknown testbed"):
        Testbed("nvme", state_file=tmp_path / "s.json")


@pytest.mark.parametrize("name", ["throttled", "zram"])
def test_non_root_is_refused_before_anything_is_made(tmp_path, monkeypatch, name):
    monkeypatch.setattr(tb_mod.os, "geteuid", lambda: 1000)
    bed = Testbed(name, dir=tmp_path, state_file=tmp_path / "s.json")
    with pytest.raises(InputError, match="needs root"):
        bed.up()
    assert os.listdir(tmp_path) == []


def test_an_up_testbed_is_not_set_up_twice_and_its_state_is_kept(tmp_path):
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"name": "virtio", "path": "x", "persistent": True}))
    with pytest.raises(InputError, match="already up"):
        Testbed("virtio", dir=tmp_path, state_file=state).up()
    assert TestbedState.load(state).persistent
    with pytest.raises(InputError, match="not 'zram'"):
        Testbed.attach("zram", state)


def test_run_arguments_split_at_the_double_dash(tmp_path):
    ns = type("NS", (), {})()
    ns.rest = ["throttled", "--dir", str(tmp_path), "--iops", "500", "--",
               "flashsim", "calibrate", "--file", "{path}", "--json"]
    ns.json = True  # given before NAME: kept
    args, cmd = split_run_args(ns)
    assert (args.name, args.dir, args.iops, args.mb_s, args.json) == \
        ("throttled", str(tmp_path), 500, 300.0, True)
    assert cmd == ["flashsim", "calibrate", "--file", "{path}", "--json"]
    bed = Testbed.__new__(Testbed)
    bed.state = TestbedState(name="virtio", path="/d/f.dat")
    assert bed.command(cmd)[3] == "/d/f.dat"


def test_cli_refusals_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["device", "testbed", "run", "virtio", "--dir", str(tmp_path), "true"]) == 2
    assert main(["device", "testbed", "down", "virtio", "--state", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "no command" in err[0] and "is it up?" in err[1]
    with pytest.raises(SystemExit) as exc:
        main(["device", "testbed", "up", "nvme"])
    assert exc.value.code == 2


@pytest.mark.disk
def test_virtio_testbed_is_removed_when_a_signal_stops_its_command(tmp_path):
    state = tmp_path / "state.json"
    child = ("import os, signal, time; os.kill(os.getppid(), signal.SIGTERM); time.sleep(30)")
    t0 = time.monotonic()
    with pytest.raises(TestbedInterrupted):
        with make_testbed("virtio", dir=tmp_path, size_bytes=1 << 20, state_file=state) as bed:
            assert readable_bytes(bed.path) == 1 << 20 and state.exists()
            bed.run([sys.executable, "-c", child])
    assert time.monotonic() - t0 < tb_mod.STOP_GRACE_S  # the child was stopped, not waited for
    assert sorted(os.listdir(tmp_path)) == []
    assert signal.getsignal(signal.SIGTERM) is not tb_mod._raise_interrupted  # restored


# -- real devices (root, a cgroup v1 blkio hierarchy, zram) ------------------------------


def _why_not_real() -> str | None:
    if os.geteuid() != 0:
        return "needs root (cgroup and zram sysfs files)"
    try:
        blkio_root()
    except InputError:
        return "no cgroup v1 blkio hierarchy mounted"
    if not Path("/sys/block/zram0").exists():
        return "no zram device (zram module not loaded)"
    if Zram().disksize_bytes():
        return "zram0 is in use"
    return None


real = pytest.mark.skipif(_why_not_real() is not None, reason=str(_why_not_real()))

READER = """
import json, sys, numpy as np
from flashsim.io.reader import DirectReader
path, chunk, qd, n, out = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
with DirectReader(path, engine="threads") as r:
    off = np.random.default_rng(1).integers(0, r.file_bytes // chunk, n) * chunk
    t = r.read_batch(off, np.full(n, chunk), qd)
json.dump({"finish_s": t.finish_s.tolist(), "o_direct": r.o_direct}, open(out, "w"))
"""


def _rate_per_s(finish_s) -> float:
    """Reads per second over the whole batch (about a second at the caps)."""
    return len(finish_s) / float(np.max(finish_s))


def _rate_here(path, chunk, qd, n) -> float:
    with DirectReader(path, engine="threads") as r:
        off = np.random.default_rng(2).integers(0, r.file_bytes // chunk, n) * chunk
        return _rate_per_s(r.read_batch(off, np.full(n, chunk), qd).finish_s)


def _rate_in(bed, tmp_path, chunk, qd, n) -> float:
    out = tmp_path / "rate.json"
    code = bed.run([sys.executable, "-c", READER, "{path}", str(chunk), str(qd), str(n),
                    str(out)])
    assert code == 0
    got = json.loads(out.read_text())
    assert got["o_direct"]
    return _rate_per_s(got["finish_s"])


@real
@pytest.mark.disk
@pytest.mark.slow
def test_throttled_reads_are_held_to_the_caps_and_nothing_is_left(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with make_testbed("virtio", dir=data_dir, size_bytes=64 << 20,
                 state_file=tmp_path / "v.json") as bed:
        raw_iops = _rate_here(bed.path, 4096, 16, 4000)
        raw_mb_s = _rate_here(bed.path, 1 << 20, 4, 200) * 1.048576
    # caps a quarter of what this disk just did, so the throttle, not the disk, limits
    iops, mb_s = max(200, int(raw_iops / 4)), max(20.0, raw_mb_s / 4)
    with make_testbed("throttled", dir=data_dir, size_bytes=64 << 20, iops=iops, mb_s=mb_s,
                 state_file=tmp_path / "t.json") as bed:
        group = bed.group()
        caps = group.caps()
        # two seconds' worth at the caps: a slice granted up front is a smaller share
        got_iops = _rate_in(bed, tmp_path, 4096, 16, 2 * iops)
        got_mb_s = _rate_in(bed, tmp_path, 1 << 20, 4, int(2 * mb_s / 1.048576)) * 1.048576
        serviced = group.serviced_reads(*map(int, bed.state.device.split(":")))
    assert caps["read_iops_device"] == f"{bed.state.device} {iops}"
    # blk-throttle grants budget in 100 ms slices (and may carry one over): over ~2 s, a
    # read rate up to ~10 % over the cap; 25 % leaves room for a loaded machine's timing
    assert got_iops <= 1.25 * iops and got_iops < raw_iops / 2
    assert got_mb_s <= 1.25 * mb_s and got_mb_s < raw_mb_s / 2
    assert serviced >= iops + int(mb_s / 1.048576)  # the reads were the group's
    assert not group.dir.exists() and os.listdir(data_dir) == []
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "v.json").exists()


@real
@pytest.mark.disk
def test_zram_is_read_with_o_direct_and_reset_after(tmp_path):
    size = 16 << 20
    with make_testbed("zram", size_bytes=size, seed=7, state_file=tmp_path / "z.json") as bed:
        zram = Zram()
        assert readable_bytes(bed.path) == size == zram.disksize_bytes()
        assert zram.stats()["orig_data_bytes"] == size  # every page written
        expected = np.frombuffer(np.random.default_rng(7).bytes(size), np.uint8)
        off = np.array([0, 4096, size - (1 << 20)])
        length = np.array([4096, 65536, 1 << 20])
        with DirectReader(bed.path) as r:
            assert r.o_direct and r.file_bytes == size
            got = r.read_batch(off, length, 2, return_data=True)
        for i in range(3):
            assert np.array_equal(got.read_bytes(i, length), expected[off[i]:off[i] + length[i]])
    assert Zram().disksize_bytes() == 0 and not (tmp_path / "z.json").exists()


@real
@pytest.mark.disk
def test_zram_ext4_mounts_a_file_system_with_a_data_file_and_removes_it(tmp_path):
    """ext4 on zram0: a random-data file read with O_DIRECT, `{dir}` its folder; after
    down, no mount, no mount point, zram reset."""
    size = 16 << 20
    with make_testbed("zram-ext4", size_bytes=size, seed=3,
                      state_file=tmp_path / "z.json") as bed:
        mount = Path(bed.state.mount)
        assert os.path.ismount(mount) and Path(bed.path).parent == mount
        assert bed.command(["x", "{dir}/stores", "{path}"]) == ["x", f"{mount}/stores", bed.path]
        with DirectReader(bed.path) as r:
            assert r.o_direct and r.file_bytes == size
        (mount / "stores").mkdir()  # what a command run on it may leave: removed with it
    assert not mount.exists() and Zram().disksize_bytes() == 0
    assert not (tmp_path / "z.json").exists()


@real
@pytest.mark.disk
def test_cli_run_in_the_throttle_group_is_undone_by_sigterm(tmp_path):
    state = tmp_path / "t.json"
    proc = subprocess.Popen([sys.executable, "-m", "flashsim", "device", "testbed", "run",
                             "throttled", "--dir", str(tmp_path), "--size", "1MiB", "--state",
                             str(state), "--", "sleep", "30"])
    deadline = time.monotonic() + 20
    while not state.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    group_dir = Path(TestbedState.load(state).cgroup)
    group = BlkioGroup(group_dir.parent, group_dir.name)
    inside = []
    while inside != [b"sleep"] and time.monotonic() < deadline:  # until the child has exec'd
        time.sleep(0.05)
        inside = [Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0] for p in group.pids()]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 128 + signal.SIGTERM
    assert inside == [b"sleep"]  # the command, and only it, ran in the group
    assert not group.dir.exists() and not state.exists() and os.listdir(tmp_path) == []
