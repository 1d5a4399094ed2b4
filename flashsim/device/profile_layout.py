"""How a profile file lays out the fitted parameters: nested by the model's stages.

`DeviceParams` is flat in Python (the engines and the fit read its fields by name); a profile
of schema_version 2 groups them under the stage of the read's path they describe (host,
command + flash units, link; docs/device-model.md), without the prefix the stage makes
redundant, so a reader sees the model's structure:

    params:
      host: {cpus: 1, overhead_us: 4.9, ...}
      units: {command_latency_us: 13.2, n_units: 2, bandwidth_mb_s: 1210.0, ...}
      link: {bandwidth_mb_s: 3380.0, overhead_us: 9.3, passes: true, ...}

Version 1 held the flat fields under `params:`; it is still read (migrated in memory).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InputError

STAGES: dict[str, dict[str, str]] = {
    "host": {
        "cpus": "host_cpus",
        "overhead_us": "host_overhead_us",
        "completion_us": "host_completion_us",
        "call_us": "host_call_us",
        "batch_start_us": "batch_start_us",
    },
    "units": {
        "command_latency_us": "command_latency_us",
        "command_latency_spread": "command_latency_spread",
        "n_units": "n_units",
        "bandwidth_mb_s": "unit_bandwidth_mb_s",
        "stripe_bytes": "stripe_bytes",
    },
    "link": {
        "bandwidth_mb_s": "link_bandwidth_mb_s",
        "overhead_us": "link_overhead_us",
        "amortization_per_read": "link_amortization_per_read",
        "wakeup_us": "link_wakeup_us",
        "congestion_per_read": "link_congestion_per_read",
        "transfer_spread": "link_transfer_spread",
        "passes": "link_passes",
        "pass_us": "link_pass_us",
        "transport_latency_us": "transport_latency_us",
    },
}
"""Stage → {name in the file: DeviceParams field}, in the order the file lists them. Every
DeviceParams field is in exactly one stage (a test checks it)."""

NESTED_KEY = {field: f"{stage}.{name}" for stage, names in STAGES.items()
              for name, field in names.items()}
"""DeviceParams field → its key under `params` in a version 2 file (`link.bandwidth_mb_s`)."""


def nest_params(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """DeviceParams fields (a model_dump, or a version 1 file's `params`) nested by stage;
    a stage none of whose fields is given is left out."""
    unknown = sorted(set(flat) - set(NESTED_KEY))
    if unknown:
        raise KeyError(f"not DeviceParams fields: {', '.join(unknown)}")
    out: dict[str, dict[str, Any]] = {}
    for stage, names in STAGES.items():
        values = {name: flat[field] for name, field in names.items() if field in flat}
        if values:
            out[stage] = values
    return out


def flatten_params(nested: Any) -> dict[str, Any]:
    """A version 2 file's `params` as DeviceParams fields; an InputError naming the key
    (`params.link.n_units`) for an unknown stage, a key in the wrong stage or a non-mapping."""
    _require_mapping(nested, "params", "stages " + ", ".join(STAGES))
    flat: dict[str, Any] = {}
    for stage, values in nested.items():
        names = STAGES.get(stage)
        if names is None:
            raise _unknown(stage, f"params.{stage}", list(STAGES))
        _require_mapping(values, f"params.{stage}", "its parameters by name")
        for name, value in values.items():
            if name not in names:
                raise _unknown(name, f"params.{stage}.{name}", list(names))
            flat[names[name]] = value
    return flat


def check_flat(params: Any) -> None:
    """A version 1 file's `params` hold no stage (a version 2 layout under the wrong version)."""
    stages = [s for s in STAGES if isinstance(params, Mapping) and s in params]
    if stages:
        raise InputError(f"unknown key {stages[0]!r} (params nested by stage are "
                         "schema_version 2)", key=f"params.{stages[0]}",
                         expected="schema_version: 2, or DeviceParams fields in version 1")


def _require_mapping(value: Any, key: str, expected: str) -> None:
    if not isinstance(value, Mapping):
        raise InputError(f"is {type(value).__name__}", key=key, expected=f"a mapping of {expected}")


def _unknown(name: Any, key: str, allowed: list[str]) -> InputError:
    """Unknown key `name` at `key`, with where it belongs when it names a parameter elsewhere
    (a field under the wrong stage, or a version 1 name such as `link_bandwidth_mb_s`)."""
    homes = [f"params.{stage}.{short}" for stage, names in STAGES.items()
             for short, field in names.items() if name in (short, field)]
    where = f" (schema_version 2 puts it at {' or '.join(homes)})" if homes else ""
    return InputError(f"unknown key {name!r}{where}", key=key,
                      expected="one of " + ", ".join(allowed))


def params_version(params: Any) -> int:
    """The layout a profile without `schema_version` uses, read from its `params`: 2 when
    they are grouped by stage, 1 when they are flat fields."""
    if isinstance(params, Mapping) and params and not set(params) & set(STAGES):
        return 1
    return 2


def file_version(data: Mapping[str, Any]) -> Any:
    """A profile mapping's schema_version: as written, or read from its params' layout."""
    if "schema_version" in data:
        return data["schema_version"]
    return params_version(data.get("params"))


def upgrade_data(data: Mapping[str, Any], version: int) -> dict[str, Any]:
    """A version 1 profile mapping (already validated) in the version 2 layout: the same keys
    and values, `schema_version: 2` first and `params` nested by stage."""
    out: dict[str, Any] = {"schema_version": 2}
    out.update((k, v) for k, v in data.items() if k != "schema_version")
    if version == 1 and isinstance(data.get("params"), Mapping):
        out["params"] = nest_params(data["params"])
    return out
