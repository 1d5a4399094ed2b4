"""Every name flashsim exports resolves to the object its module defines."""

import importlib

import flashsim


def test_every_public_name_resolves_to_its_module_object():
    for name, module in flashsim._API.items():
        expected = getattr(importlib.import_module(module, "flashsim"), name)
        assert getattr(flashsim, name) is expected, name


def test_unknown_name_is_an_attribute_error():
    try:
        flashsim.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_bundled_traces_and_devices_are_found_by_name():
    assert {"opt-mini-ref", "opt-mini-train"} <= set(flashsim.bundled_trace_names())
    assert {"m1max-paper", "local-virtio"} <= set(flashsim.bundled_device_names())
    by_name = flashsim.ActivationTrace.load("opt-mini-ref")
    by_path = flashsim.ActivationTrace.load(flashsim.bundled_trace_path("opt-mini-ref"))
    assert by_name.n_tokens == by_path.n_tokens and by_name.geometry == by_path.geometry
    profile = flashsim.DeviceProfile.load("m1max-paper")
    assert profile == flashsim.DeviceProfile.load(flashsim.bundled_device_path("m1max-paper.yaml"))


def test_an_unknown_bundled_name_lists_the_names():
    for load, name in ((flashsim.ActivationTrace.load, "opt-mini-nope"),
                       (flashsim.DeviceProfile.load, "no-such-disk")):
        try:
            load(name)
        except flashsim.InputError as exc:
            assert name in str(exc) and "bundled" in str(exc), exc
        else:
            raise AssertionError(f"{name} loaded")


def test_advise_is_exported_beside_its_package():
    # the function is `advise_layouts`: `flashsim.advise` is the package once imported
    import flashsim.advise.advise as module

    assert flashsim.advise_layouts is module.advise_layouts
    assert flashsim.register_family is importlib.import_module(
        "flashsim.advise.families").register_family
