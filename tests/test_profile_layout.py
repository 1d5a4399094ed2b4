"""Profile files nest the fitted parameters by the model's stage (schema_version 2); version 1
files (flat params) load to the same DeviceParams, and `flashsim device migrate` rewrites
them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from flashsim.cli import main
from flashsim.data import bundled_device_path
from flashsim.device.profile import PROFILE_SCHEMA_VERSION, DeviceParams, DeviceProfile
from flashsim.device.profile_layout import NESTED_KEY, STAGES, flatten_params, nest_params
from flashsim.errors import InputError

BUNDLED = bundled_device_path("m1max-paper")
_BUNDLED_DATA = yaml.safe_load(BUNDLED.read_text())


def _v2() -> dict:
    return copy.deepcopy(_BUNDLED_DATA)


def _v1() -> dict:
    """The bundled profile as a version 1 file: the same parameters, flat."""
    data = _v2()
    data["schema_version"] = 1
    data["params"] = DeviceProfile.from_dict(_v2()).params.model_dump()
    return data


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_parameter_is_in_exactly_one_stage():
    fields = [field for names in STAGES.values() for field in names.values()]
    assert len(fields) == len(set(fields))
    assert set(fields) == set(DeviceParams.model_fields)
    assert list(STAGES) == ["host", "units", "link"]


def test_nesting_and_flattening_are_inverse():
    flat = DeviceProfile.load(BUNDLED).params.model_dump()
    nested = nest_params(flat)
    assert flatten_params(nested) == flat
    assert nested["link"]["bandwidth_mb_s"] == flat["link_bandwidth_mb_s"]
    assert nested["units"]["bandwidth_mb_s"] == flat["unit_bandwidth_mb_s"]
    assert nested["host"]["cpus"] == flat["host_cpus"]
    assert NESTED_KEY["transport_latency_us"] == "link.transport_latency_us"


def test_bundled_profiles_are_version_2_with_params_by_stage():
    data = _v2()
    assert data["schema_version"] == PROFILE_SCHEMA_VERSION == 2
    assert set(data["params"]) == set(STAGES)


def test_version_1_and_2_of_a_profile_load_to_equal_params():
    v1 = DeviceProfile.from_dict(_v1(), file="v1.yaml")
    v2 = DeviceProfile.from_dict(_v2(), file="v2.yaml")
    assert v1.params == v2.params
    assert v1.schema_version == v2.schema_version == 2  # migrated in memory
    assert v1 == v2


def test_a_profile_without_a_version_is_read_by_its_params_layout():
    for make in (_v1, _v2):
        data = make()
        del data["schema_version"]
        assert DeviceProfile.from_dict(data).params == DeviceProfile.load(BUNDLED).params


def test_save_writes_version_2_and_loads_back_equal(tmp_path):
    profile = DeviceProfile.from_dict(_v1())
    path = tmp_path / "p.yaml"
    profile.save(path)
    text = path.read_text()
    assert text.startswith("schema_version: 2\n") and "\nparams:\n  host:\n    cpus:" in text
    assert DeviceProfile.load(path) == profile
    assert DeviceProfile.from_dict(profile.model_dump()) == profile
    assert "host_overhead_us" in profile.params.model_dump()  # Python keeps the flat fields


def test_migrate_rewrites_a_version_1_file_in_place(tmp_path, capsys):
    path = _write(tmp_path / "old.yaml", _v1())
    assert main(["device", "migrate", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["from_version"] == 1 and out["schema_version"] == 2 and out["written"]
    data = yaml.safe_load(path.read_text())
    assert data["schema_version"] == 2 and set(data["params"]) == set(STAGES)
    assert DeviceProfile.load(path).params == DeviceProfile.load(BUNDLED).params
    before = path.read_text()
    assert main(["device", "migrate", str(path), "--json"]) == 0  # already current
    assert not json.loads(capsys.readouterr().out)["written"] and path.read_text() == before


def test_migrate_to_another_file_leaves_the_source(tmp_path, capsys):
    src = _write(tmp_path / "old.yaml", _v1())
    text = src.read_text()
    out = tmp_path / "new.yaml"
    assert main(["device", "migrate", str(src), "--out", str(out)]) == 0
    assert "1 → 2" in capsys.readouterr().out
    assert src.read_text() == text
    assert DeviceProfile.load(out).params == DeviceProfile.load(src).params


def _stage(stage: str, **values):
    return lambda d: d["params"][stage].update(values)


@pytest.mark.parametrize("mutate, key, words", [
    (lambda d: d["params"]["link"].update(n_units=4), "params.link.n_units", "params.units.n_units"),
    (lambda d: d["params"].update(hosts={"cpus": 1}), "params.hosts", "unknown key"),
    (lambda d: d["params"].update(n_units=4), "params.n_units", "params.units.n_units"),
    (_stage("link", link_bandwidth_mb_s=10.0), "params.link.link_bandwidth_mb_s",
     "params.link.bandwidth_mb_s"),
    (lambda d: d["params"].update(link=[1, 2]), "params.link", "a mapping"),
    (lambda d: d.update(params=[1]), "params", "a mapping"),
    (_stage("link", bandwidth_mb_s=-1.0), "params.link.bandwidth_mb_s", "greater than"),
    (_stage("units", bandwidth_mb_s=1e300), "params.units.bandwidth_mb_s", "physical"),
    (_stage("host", cpus=True), "params.host.cpus", "expected a number"),
    (lambda d: d["params"]["units"].pop("n_units"), "params.units.n_units", "missing"),
])
def test_a_bad_nested_key_or_value_is_one_line_exit_2(tmp_path, capsys, mutate, key, words):
    data = _v2()
    mutate(data)
    path = _write(tmp_path / "bad.yaml", data)
    text = path.read_text()
    for argv in (["device", "show", "--profile", str(path)], ["device", "migrate", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and key in err and words in err
    assert path.read_text() == text  # migrate wrote nothing


def test_version_1_with_nested_params_is_refused(tmp_path, capsys):
    path = _write(tmp_path / "bad.yaml", dict(_v2(), schema_version=1))
    assert main(["device", "show", "--profile", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "params.host" in err
    assert "schema_version 2" in err


@pytest.mark.parametrize("version", [0, 3, "x", "2", True, None])
def test_an_unknown_schema_version_is_one_line_exit_2(tmp_path, capsys, version):
    path = _write(tmp_path / "bad.yaml", dict(_v2(), schema_version=version))
    for argv in (["device", "show", "--profile", str(path)], ["device", "migrate", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and "schema_version" in err
    with pytest.raises(InputError, match="schema version"):
        DeviceProfile.from_dict(dict(_v2(), schema_version=version), file="p.yaml")
