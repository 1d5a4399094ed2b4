"""Flash units and command latency: hand-checked timings of striping and unit queues, the
command-latency spread (mean kept, saturation softened, drawn per read of the whole call)."""

import numpy as np
import pytest

from device_cases import PARAMS
from flashsim.device import make_device
from flashsim.device.fit import predict_detail


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_single_small_read_by_hand(engine):
    dev = make_device(PARAMS, engine)
    run = dev.run([0], [4096], 1)
    # host 5 µs, then command 40 µs, then 4096 B at min(unit 400, link 2000) MB/s = 10.24 µs
    assert run.start_s[0] == pytest.approx(5e-6)
    assert run.finish_s[0] == pytest.approx(5e-6 + 40e-6 + 4096 / 400e6)
    assert run.makespan_s == pytest.approx(55.24e-6)


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_large_read_is_striped_over_units(engine):
    dev = make_device(PARAMS, engine)
    run = dev.run([0], [1 << 20], 1)
    # 16 stripes of 64 KiB over 8 units: 128 KiB per unit at 400 MB/s = 327.68 µs in parallel;
    # the link needs 524.288 µs for 1 MiB, so the link is the bottleneck (cut-through)
    assert run.finish_s[0] - run.start_s[0] == pytest.approx(40e-6 + (1 << 20) / 2000e6)
    narrow = make_device(PARAMS.model_copy(update={"n_units": 1}), engine).run([0], [1 << 20], 1)
    assert narrow.finish_s[0] - narrow.start_s[0] == pytest.approx(40e-6 + (1 << 20) / 400e6)


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_two_reads_on_one_unit_queue(engine):
    dev = make_device(PARAMS, engine)
    # both in stripe 0 → unit 0: the second waits for the first (FIFO)
    run = dev.run([0, 8192], [4096, 4096], 2)
    service = 40e-6 + 4096 / 400e6
    assert sorted(run.finish_s) == pytest.approx([5e-6 + service, 5e-6 + 2 * service])
    # different units (stripes 0 and 1) overlap fully
    run = dev.run([0, 65536], [4096, 4096], 2)
    assert run.finish_s == pytest.approx([5e-6 + service] * 2)


def test_command_latency_spread_keeps_the_mean_and_softens_saturation():
    spread = PARAMS.model_copy(update={"command_latency_spread": 1.5})
    idle = [predict_detail(p, 4096, 1)["latency_mean_us"] for p in (PARAMS, spread)]
    assert idle[1] == pytest.approx(idle[0], rel=0.05)  # mean command latency unchanged
    mid = [predict_detail(p, 4096, 8)["throughput_mb_s"] for p in (PARAMS, spread)]
    assert mid[1] < 0.9 * mid[0]  # reads queue behind slow ones before the units are full
    deep = [predict_detail(p, 4096, 256, n_reads=20000)["throughput_mb_s"]
            for p in (PARAMS, spread)]
    assert deep[1] == pytest.approx(deep[0], rel=0.1)  # the same cap, reached later


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_command_factor_averages_one_over_many_short_batches(engine):
    # qd 1, one stripe per read, a fast link: each read takes host 5 + 40·f + 4096 B / 400 MB/s
    # (the link's 2.05 µs overlaps the unit), so the batches' total time gives the mean factor f.
    # Drawn by position in the batch, every 8-read batch would get the same 8 factors.
    spread = PARAMS.model_copy(update={"command_latency_spread": 1.0})
    rng = np.random.default_rng(3)
    n_batches, n = 1500, 8
    off = rng.integers(0, 1 << 20, size=n_batches * n) * 4096
    length = np.full(n_batches * n, 4096)
    ptr = np.arange(n_batches + 1) * n
    total_s = make_device(spread, engine).run_batches(off, length, ptr, 1).sum()
    per_read_us = total_s * 1e6 / (n_batches * n)
    mean_factor = (per_read_us - 5.0 - 4096 / 400.0) / 40.0
    assert mean_factor == pytest.approx(1.0, abs=0.04)
