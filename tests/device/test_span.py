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
from flashsim.device.predict import predict_batch_makespan_us
from flashsim.device.profile import (
    DeviceParams,
    DevicePoint,
    DeviceProfile,
    MeasuredInfo,
    SpanFactor,
    SpanInfo,
)
from flashsim.device.span import (
    SPAN_KEYS,
    STANDARD_SPANS,
    at_span,
    bandwidth_factor,
    faster,
    fit_span,
    fixed_time_factor,
    span_ratios,
    time_ratio,
)
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.io.reader import ReadTimes
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace

GIB = 1 << 30


def batch(chunk, qd, n, makespan_us, span=None):
    return DevicePoint(chunk_bytes=chunk, queue_depth=qd, batch_reads=n,
                       batch_makespan_us=makespan_us, throughput_mb_s=n * chunk / makespan_us,
                       span_bytes=span)


# one unit, 100 µs to first byte, 400 MB/s: bytes are most of a 128 KiB read, little of 4 KiB
PARAMS = DeviceParams(host_overhead_us=5.0, command_latency_us=100.0, n_units=1,
                      unit_bandwidth_mb_s=400.0, link_bandwidth_mb_s=4000.0,
                      stripe_bytes=65536)
STEADY = [DevicePoint(chunk_bytes=c, queue_depth=q, throughput_mb_s=10.0 * q)
          for c in (4096, 65536) for q in (1, 8)]
WHOLE = [batch(c, q, n, predict_batch_makespan_us(PARAMS, c, q, n)) for c, q, n in SPAN_KEYS]


def spanned(span, factor=None, ratios=None):
    """Span points as a device whose bytes are factor[0] × and per-read times factor[1] ×
    as cheap over `span` would measure them (or with the given time ratios)."""
    if ratios is None:
        ratios = [predict_batch_makespan_us(faster(PARAMS, *factor), c, q, n)
                  / predict_batch_makespan_us(PARAMS, c, q, n) for c, q, n in SPAN_KEYS]
    return [batch(c, q, n, w.batch_makespan_us * r, span)
            for (c, q, n), w, r in zip(SPAN_KEYS, WHOLE, ratios)]


def profile_with(span_points, file_bytes=2 * GIB):
    return DeviceProfile(name="t", points=STEADY + WHOLE, params=PARAMS,
                         measured=MeasuredInfo(file_bytes=file_bytes), span_points=span_points)


@pytest.mark.parametrize("planted", [(2.0 ** 1.5, 1.0), (2.0, 2.0 ** -0.5), (1.0, 0.5)])
def test_the_fit_recovers_factors_planted_in_the_span_points(planted):
    info = fit_span(profile_with(spanned(4 << 20, planted)), PARAMS)  # on the fit's grid
    (only,) = info.spans
    assert only.agree
    assert (only.bandwidth_factor, only.fixed_time_factor) == pytest.approx(planted)
    ratios = span_ratios(WHOLE, spanned(4 << 20, planted))[4 << 20]
    assert only.time_ratio == pytest.approx(np.median(list(ratios.values())), rel=1e-3)


def test_cheaper_bytes_speed_up_large_reads_more_than_small_ones():
    ratios = span_ratios(WHOLE, spanned(4 << 20, (2.0 ** 1.5, 1.0)))[4 << 20]
    assert ratios[(131072, 8, 16)] < 0.6 < ratios[(4096, 1, 64)] < 0.95


def test_disagreeing_or_slower_spans_change_nothing_and_factors_fall_with_span():
    pts = (spanned(4 << 20, ratios=[0.9, 1.1, 0.8, 1.05, 0.95])  # drift, not span
           + spanned(32 << 20, ratios=[1.2] * 5)  # slower: no physical reason, no factor
           + spanned(256 << 20, (2.0, 1.0))
           + spanned(4 * GIB, (8.0, 1.0)))  # beyond the file: ignored
    info = fit_span(profile_with(pts), PARAMS)
    assert [f.span_bytes for f in info.spans] == [4 << 20, 32 << 20, 256 << 20]
    assert [f.agree for f in info.spans] == [False, True, True]
    # an effect at 256 MiB that 4 MiB does not show is chance: no factor above a smaller span's
    assert [f.bandwidth_factor for f in info.spans] == pytest.approx([1.0, 1.0, 1.0])
    assert time_ratio(info, 4 << 20) == 1.0  # the baseline keeps only agreeing ratios
    falling = fit_span(profile_with(spanned(4 << 20, (4.0, 0.5)) + spanned(32 << 20, (8.0, 0.25))
                                    + spanned(256 << 20, (2.0, 1.0))), PARAMS)
    assert [f.bandwidth_factor for f in falling.spans] == pytest.approx([4.0, 4.0, 2.0])
    assert [f.fixed_time_factor for f in falling.spans] == pytest.approx([0.5, 0.5, 1.0])
    assert fit_span(profile_with([]), PARAMS) is None
    assert fit_span(profile_with(pts, file_bytes=None), PARAMS) is None


def test_factors_are_interpolated_in_log_span_up_to_one_at_the_file_size():
    info = SpanInfo(file_bytes=1 << 30, spans=[
        SpanFactor(span_bytes=1 << 20, time_ratio=0.5, agree=True, bandwidth_factor=4.0,
                   fixed_time_factor=0.5),
        SpanFactor(span_bytes=1 << 25, time_ratio=0.7, agree=True, bandwidth_factor=2.0)])
    assert bandwidth_factor(info, 1 << 20) == pytest.approx(4.0)
    assert bandwidth_factor(info, 1 << 10) == pytest.approx(4.0)  # below: the smallest's
    assert bandwidth_factor(info, 1 << 22) == pytest.approx(2.0 ** (1 + 3 / 5))  # log-linear
    assert bandwidth_factor(info, 1 << 30) == bandwidth_factor(info, None) == 1.0
    assert bandwidth_factor(None, 1 << 20) == 1.0
    assert time_ratio(info, 1 << 20) == pytest.approx(0.5)
    assert fixed_time_factor(info, 1 << 20) == pytest.approx(0.5)
    assert fixed_time_factor(info, 1 << 22) == pytest.approx(2.0 ** (-3 / 5))


G = ModelGeometry("hand-block", 2, 2048, 16, 2)  # 4 KiB rows


def hand_plan():
    layers = [NeuronSets.from_lists([[0], [1, 5], [3]]), NeuronSets.from_lists([[0], [2], [7]])]
    return make_layout("sparse").plan(ActivationTrace(G, np.arange(3), 1, layers, layers,
                                                      {"name": "hand"}))


def test_a_plan_over_a_small_file_is_simulated_with_cheaper_bytes():
    plan = hand_plan()
    profile = profile_with(spanned(plan.file_bytes, (4.0, 2.0 ** -0.25)))
    profile = profile.model_copy(update={"span": fit_span(profile, PARAMS)})
    assert io_seconds(plan, profile, 1) == pytest.approx(
        io_seconds(plan, faster(PARAMS, 4.0, 2.0 ** -0.25), 1))
    assert io_seconds(plan, profile, 1).sum() < 0.95 * io_seconds(plan, PARAMS, 1).sum()
    device = make_device(profile)
    assert at_span(device, 4 * GIB) is device  # beyond the calibration file: as calibrated
    scaled = at_span(ScaledDevice(device, 2.0), plan.file_bytes)
    assert scaled.factor == 2.0
    assert scaled.inner.params == faster(PARAMS, 4.0, 2.0 ** -0.25)
    saved = DeviceProfile.from_dict(profile.model_dump())
    assert saved.span_points == profile.span_points and saved.span == profile.span


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
