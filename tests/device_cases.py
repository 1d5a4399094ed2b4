"""Device parameter sets and workloads shared by the tests in tests/device/."""

import numpy as np

from flashsim.device import DeviceParams
from flashsim.device.fast import FastDevice
from flashsim.device.fit import _steady_core

PARAMS = DeviceParams(host_overhead_us=5.0, command_latency_us=40.0, n_units=8,
                      unit_bandwidth_mb_s=400.0, link_bandwidth_mb_s=2000.0, stripe_bytes="64k")
CONGESTED = PARAMS.model_copy(update={"n_units": 3, "stripe_bytes": 16384,
                                      "link_congestion_per_read": 0.01,
                                      "link_overhead_us": 7.0, "transport_latency_us": 3.0})
SHARED_HOST = CONGESTED.model_copy(update={"host_cpus": 1, "host_overhead_us": 4.0,
                                           "link_wakeup_us": 6.0, "host_completion_us": 2.5,
                                           "command_latency_spread": 1.5})
TWO_CPUS = PARAMS.model_copy(update={"host_cpus": 2, "host_overhead_us": 9.0,
                                     "host_completion_us": 3.0})
BATCH_START = SHARED_HOST.model_copy(update={"batch_start_us": 45.0})
CALLS = SHARED_HOST.model_copy(update={"host_call_us": 8.0, "batch_start_us": 20.0})
CALLS_TWO_CPUS = TWO_CPUS.model_copy(update={"host_call_us": 5.5})

# host 5 µs, command 40 µs, 400 MB/s units (4 KiB: 10.24 µs), link 2000 MB/s (4 KiB: 2.048 µs),
# 20 µs of link overhead per read
LINK_BASE = DeviceParams(host_overhead_us=5.0, command_latency_us=40.0, n_units=64,
                         unit_bandwidth_mb_s=400.0, link_bandwidth_mb_s=2000.0,
                         stripe_bytes="4k", link_overhead_us=20.0)
AMORTIZED = LINK_BASE.model_copy(update={"link_amortization_per_read": 1.0})

# 10 µs submit, 5 µs reap, a 50 µs pass; units and link so fast that bytes cost ~nothing
PASSES = DeviceParams(host_overhead_us=10.0, host_completion_us=5.0, command_latency_us=0.0,
                      n_units=1, stripe_bytes="1m", unit_bandwidth_mb_s=1e9,
                      link_bandwidth_mb_s=1e9, link_passes=True, link_pass_us=50.0)
ONE_CPU = PASSES.model_copy(update={"host_cpus": 1})

# one host CPU and every host and link term on, for the link-transfer spread
SPREAD_BASE = DeviceParams(host_overhead_us=3.0, command_latency_us=20.0, n_units=16,
                           unit_bandwidth_mb_s=800.0, link_bandwidth_mb_s=3000.0,
                           stripe_bytes="64k", host_cpus=1, host_completion_us=4.0,
                           link_overhead_us=25.0, link_wakeup_us=8.0,
                           command_latency_spread=0.5, host_call_us=3.0, batch_start_us=10.0)
SPREAD = SPREAD_BASE.model_copy(update={"link_transfer_spread": 0.4})
MIB = 1 << 20


def mixed_batches(rng: np.random.Generator, n_batches: int):
    """(offsets, lengths, batch pointer) of batches of 1 to 3000 reads of 4 KiB to 1 MiB,
    alternately sequential and random, of one size or mixed sizes."""
    sizes = np.array([4096, 8192, 16384, 32768, 65536, 262144, 1 << 20])
    offs, lens, ptr = [], [], [0]
    for b in range(n_batches):
        n = int(rng.choice([1, 3, 17, 200, 1000, 3000]))
        length = rng.choice(sizes, size=n) if b % 3 else np.full(n, rng.choice(sizes))
        if b % 2:  # sequential (contiguous) reads
            first = int(rng.integers(0, 1 << 18)) * 4096
            off = np.concatenate([[0], np.cumsum(length[:-1])]) + first
        else:  # random aligned reads over 4 GiB
            off = rng.integers(0, 1 << 20, size=n) * 4096
        offs.append(off)
        lens.append(length)
        ptr.append(ptr[-1] + n)
    return np.concatenate(offs), np.concatenate(lens), np.array(ptr)


def random_reads(n: int, seed: int, sizes=(4096, 65536, MIB)) -> tuple[np.ndarray, np.ndarray]:
    """n random 4 KiB-aligned reads over 1 GiB, each of one of `sizes`."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1 << 18, size=n) * 4096, rng.choice(np.array(sizes), size=n)


def qd1_latencies_us(params: DeviceParams, n: int = 6000, seed: int = 11) -> np.ndarray:
    """Steady-state latencies (µs) of random 1 MiB reads at QD 1 on the fast path."""
    off, length = random_reads(n, seed, sizes=(MIB,))
    run = FastDevice(params).run(off, length, 1)
    return _steady_core(run.start_s, run.finish_s, MIB, 1)[1]
