"""Span points: the same short batches over a small span of the file, and the factor a plan
over a small file gets from them."""

import numpy as np
import pytest

from flashsim.cli import main
from flashsim.cost.simulate import io_seconds
from flashsim.device import make_device
from flashsim.device.calibrate import _span_grid, calibrate, measure_batch_point
from flashsim.device.commands import _spans
from flashsim.device.drift import ScaledDevice
from flashsim.device.profile import DeviceParams, DevicePoint, DeviceProfile, MeasuredInfo
from flashsim.device.span import SPAN_KEYS, STANDARD_SPANS, SpanCurve, span_factor
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.io.reader import ReadTimes
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace

GIB = 1 << 30


def batch(chunk, qd, n, makespan_us, span=None):
    return DevicePoint(chunk_bytes=chunk, queue_depth=qd, batch_reads=n,
                       batch_makespan_us=makespan_us, throughput_mb_s=n * chunk / makespan_us,
                       span_bytes=span)


WHOLE = [batch(c, q, n, 100.0 * (i + 1)) for i, (c, q, n) in enumerate(SPAN_KEYS)]


def spanned(span, ratios):
    return [batch(c, q, n, 100.0 * (i + 1) * r, span)
            for i, ((c, q, n), r) in enumerate(zip(SPAN_KEYS, ratios))]


def test_the_factor_is_the_median_ratio_and_one_where_the_keys_disagree():
    pts = (spanned(4 << 20, [0.4, 0.5, 0.6, 0.45, 0.55])
           + spanned(32 << 20, [0.9, 1.1, 0.8, 1.05, 0.95]))  # drift, not span
    curve = SpanCurve.of(WHOLE, pts, 2 * GIB)
    assert curve.spans_bytes == (4 << 20, 32 << 20)
    assert curve.factors == pytest.approx((0.5, 1.0))
    assert curve.factor(4 << 20) == pytest.approx(0.5)
    assert curve.factor(1 << 20) == pytest.approx(0.5)  # below the smallest: its factor
    assert curve.factor(2 * GIB) == curve.factor(8 * GIB) == curve.factor(None) == 1.0
    # linear in log span: 8 MiB is a third of the way from 4 MiB to 32 MiB
    assert curve.factor(8 << 20) == pytest.approx(0.5 + 0.5 / 3)


def test_a_larger_span_is_never_faster_and_spans_beyond_the_file_are_ignored():
    pts = (spanned(4 << 20, [0.7] * 5) + spanned(64 << 20, [0.5] * 5)
           + spanned(4 * GIB, [0.2] * 5))
    curve = SpanCurve.of(WHOLE, pts, 2 * GIB)
    assert curve.spans_bytes == (4 << 20, 64 << 20)
    assert curve.factors == pytest.approx((0.5, 0.5))
    assert SpanCurve.of(WHOLE, [], 2 * GIB) is None
    assert SpanCurve.of(WHOLE, pts, None) is None  # no file size: nothing to scale to


G = ModelGeometry("hand-block", 2, 2048, 16, 2)  # 4 KiB rows
SERIAL = DeviceParams(host_overhead_us=0.0, command_latency_us=100.0, n_units=1,
                      unit_bandwidth_mb_s=4096.0, link_bandwidth_mb_s=1e6, stripe_bytes=65536)


def hand_plan():
    layers = [NeuronSets.from_lists([[0], [1, 5], [3]]), NeuronSets.from_lists([[0], [2], [7]])]
    return make_layout("sparse").plan(ActivationTrace(G, np.arange(3), 1, layers, layers,
                                                      {"name": "hand"}))


def test_a_plan_over_a_small_file_is_scaled_by_the_factor_at_its_size():
    plan = hand_plan()
    steady = [DevicePoint(chunk_bytes=c, queue_depth=q, throughput_mb_s=10.0 * q)
              for c in (4096, 65536) for q in (1, 8)]
    profile = DeviceProfile(name="t", points=steady + WHOLE, params=SERIAL,
                            measured=MeasuredInfo(file_bytes=2 * GIB),
                            span_points=spanned(plan.file_bytes, [0.5, 0.6, 0.4, 0.5, 0.55]))
    plain = io_seconds(plan, SERIAL, 1)
    assert io_seconds(plan, profile, 1) == pytest.approx(0.5 * plain)
    device = make_device(profile)
    assert span_factor(device, plan.file_bytes) == pytest.approx(0.5)
    assert span_factor(ScaledDevice(device, 2.0), plan.file_bytes) == pytest.approx(0.5)
    assert span_factor(make_device(SERIAL), plan.file_bytes) == 1.0  # bare parameters
    saved = DeviceProfile.from_dict(profile.model_dump())
    assert saved.span_points == profile.span_points


def test_the_span_grid_repeats_the_keys_the_grid_holds_below_the_file_size():
    grid = [(c, q, n, "random", None) for c, q, n in SPAN_KEYS[:2]]
    grid += [(4096, 1, None, "random", None), (SPAN_KEYS[2][0], 1, 3, "random", None)]
    got = _span_grid(grid, (1 << 20, 4 << 20, 8 << 20), 8 << 20)
    assert sorted(got) == sorted((c, q, n, "random", s) for s in (1 << 20, 4 << 20)
                                 for c, q, n in SPAN_KEYS[:2])


class _RecordingReader:
    file_bytes, path = 64 << 20, "recording"

    def __init__(self):
        self.offsets = []

    def read_batch(self, offsets, lengths, queue_depth):
        self.offsets.append(np.asarray(offsets))
        t = np.arange(1, len(offsets) + 1) * 1e-5
        return ReadTimes(start_s=t - 1e-5, finish_s=t, makespan_s=float(t[-1]))


def test_a_span_point_reads_only_the_first_span_bytes():
    reader = _RecordingReader()
    measure_batch_point(reader, 16384, 8, 16, duration_s=0.0, rng=np.random.default_rng(0),
                        span_bytes=1 << 20)
    off = np.concatenate(reader.offsets)
    assert off.max() + 16384 <= 1 << 20 and len(np.unique(off)) > 40  # of its 64 slots
    whole = _RecordingReader()
    measure_batch_point(whole, 16384, 8, 16, duration_s=0.0, rng=np.random.default_rng(0))
    assert np.concatenate(whole.offsets).max() > 32 << 20


def test_cli_and_api_share_the_standard_spans():
    assert _spans(None) == STANDARD_SPANS == calibrate.__kwdefaults__["spans"]
    assert _spans("none") == () and _spans("1m,4m") == (1 << 20, 4 << 20)


@pytest.mark.parametrize("spans, words", [("3000", "--spans"), ("0", "--spans"),
                                          ("lots", "--spans")])
def test_a_bad_span_is_one_line_and_writes_nothing(tmp_path, capsys, spans, words):
    out = tmp_path / "dev.yaml"
    code = main(["calibrate", "--file", str(tmp_path / "d.bin"), "--size", "8m", "--out",
                 str(out), "--chunks", "4k,16k", "--qd", "1,8", "--spans", spans, "--no-fit"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and "\n" not in err
    assert not out.exists() and not (tmp_path / "d.bin").exists()


@pytest.mark.disk
def test_calibrate_measures_span_points_apart_from_the_fitted_points(tmp_path, capsys):
    out = tmp_path / "dev.yaml"
    code = main(["calibrate", "--file", str(tmp_path / "d.bin"), "--size", "8m", "--out",
                 str(out), "--chunks", "4k,16k", "--qd", "1,8", "--duration", "0.02",
                 "--warmup", "0.01", "--repeats", "2", "--batch-reads", "16,64",
                 "--batch-qds", "1,8", "--spans", "1m,2m,8m", "--no-fit", "--json"])
    assert code == 0
    profile = DeviceProfile.load(out)
    assert all(p.span_bytes is None for p in profile.points)
    assert sorted((p.chunk_bytes, p.queue_depth, p.batch_reads, p.span_bytes)
                  for p in profile.span_points) == sorted(
        (c, q, n, s) for s in (1 << 20, 2 << 20) for c, q, n in SPAN_KEYS[:2])
    assert all(p.repeats == 2 and p.batch_makespan_us > 0 for p in profile.span_points)
