"""The trace file: round trip, checksum, version and geometry checks."""

import json
import zipfile

import numpy as np
import pytest

from flashsim.errors import InputError
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.trace.format import ActivationTrace

GEOM = ModelGeometry("hand", n_layers=2, d_model=8, d_ffn=16, dtype_bytes=2)


def _trace():
    active = [NeuronSets.from_lists([[1, 3], [3], [0, 15]]),
              NeuronSets.from_lists([[2], [], [4, 5, 6]])]
    predicted = [NeuronSets.from_lists([[1, 3, 4], [3], [0, 15]]),
                 NeuronSets.from_lists([[2, 7], [1], [4, 5]])]
    return ActivationTrace(GEOM, np.array([5, 6, 7]), 1, active, predicted, {"synthetic": False})


def test_neuron_sets_mask_round_trip():
    s = NeuronSets.from_lists([[3, 1, 1], [], [15]])
    assert s[0].tolist() == [1, 3] and s[1].tolist() == [] and s.counts().tolist() == [2, 0, 1]
    back = NeuronSets.from_mask(s.to_mask(16))
    assert back.ptr.tolist() == s.ptr.tolist() and back.ids.tolist() == s.ids.tolist()


def test_round_trip(tmp_path):
    p = tmp_path / "t.trace"
    _trace().save(p)
    t = ActivationTrace.load(p)
    assert t.geometry == GEOM and t.token_ids.tolist() == [5, 6, 7] and t.n_prompt_tokens == 1
    assert t.active[1][2].tolist() == [4, 5, 6] and t.predicted[0][0].tolist() == [1, 3, 4]


def _rewrite(src, dst, mutate):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, mutate(item.filename, zin.read(item.filename)))


def test_corrupt_and_foreign_files_fail_clearly(tmp_path):
    p = tmp_path / "t.trace"
    _trace().save(p)

    def flip_id(name, data):
        if name == "active_ids_0.npy":
            data = data[:-1] + bytes([data[-1] ^ 1])
        return data
    bad = tmp_path / "bad.trace"
    _rewrite(p, bad, flip_id)
    with pytest.raises(InputError, match="checksum mismatch"):
        ActivationTrace.load(bad)

    def bump_version(name, data):
        if name == "meta_json.npy":
            header, _, body = data.partition(b"}")  # npy header ends with '}' of its dict
            meta = json.loads(np.lib.format.read_array(__import__("io").BytesIO(data)).tobytes())
            meta["version"] = 99
            buf = __import__("io").BytesIO()
            np.save(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
            data = buf.getvalue()
        return data
    other = tmp_path / "other.trace"
    _rewrite(p, other, bump_version)
    with pytest.raises(InputError, match="version 99"):
        ActivationTrace.load(other)

    junk = tmp_path / "junk.trace"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable flashsim trace"):
        ActivationTrace.load(junk)
    with pytest.raises(InputError, match="does not exist"):
        ActivationTrace.load(tmp_path / "nope.trace")


def test_geometry_mismatch_is_reported():
    t = _trace()
    with pytest.raises(InputError, match="d_ffn 16 vs 32"):
        t.check_geometry(ModelGeometry("m", 2, 8, 32, 2))
    t.check_geometry(ModelGeometry("other-name", 2, 8, 16, 2))


def test_inconsistent_trace_rejected():
    with pytest.raises(ValueError, match="outside"):
        ActivationTrace(GEOM, np.array([1]), 0, [NeuronSets.from_lists([[16]])] * 2)
