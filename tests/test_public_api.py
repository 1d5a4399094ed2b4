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
