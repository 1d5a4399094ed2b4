"""Sizes with units: `4k`, `32KiB`, `1m`, `2GiB` → bytes (binary multiples, like fio)."""

from __future__ import annotations

import re

from .errors import InputError

MAX_SIZE_BYTES = 1 << 50
"""Largest size any option or file may give: 1 PiB, beyond any disk here, and far enough below
2**63 that offsets and sums of such sizes stay within int64 (the simulators' type)."""
MAX_QUEUE_DEPTH = 65536
"""Most reads in flight any entry point accepts: the largest NVMe queue (64 Ki entries) and
Linux's default aio-max-nr; a deeper queue is a typo, and the simulators allocate per read."""

_MULTIPLIER = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(value: object, *, file: str | None = None, key: str | None = None,
               allow_zero: bool = False) -> int:
    """Bytes from an int or a string like `4k`, `32KiB`, `1m`, `2GiB`; k = 1024 as in fio."""
    expected = "a size like 4096, 4k, 32KiB, 1m or 2GiB"
    if isinstance(value, bool):
        raise InputError(f"{value!r} is not a size", file=file, key=key, expected=expected)
    if isinstance(value, int):
        size = value
    elif isinstance(value, float) and value.is_integer():
        size = int(value)
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m or (m.group(3) and m.group(3).lower() == "ib" and not m.group(2)):
            raise InputError(f"{value!r} is not a size", file=file, key=key, expected=expected)
        number = float(m.group(1)) * _MULTIPLIER[m.group(2).lower()]
        if not number.is_integer():
            raise InputError(f"{value!r} is not a whole number of bytes", file=file, key=key,
                             expected=expected)
        size = int(number)
    else:
        raise InputError(f"{value!r} is not a size", file=file, key=key, expected=expected)
    if size < 0 or (size == 0 and not allow_zero):
        raise InputError(f"{value!r} must be positive", file=file, key=key, expected=expected)
    if size > MAX_SIZE_BYTES:
        raise InputError(f"{value!r} is larger than {format_size(MAX_SIZE_BYTES)}", file=file,
                         key=key, expected=expected)
    return size


def format_size(n_bytes: int) -> str:
    """Short binary form: 4096 → '4KiB', 1536 → '1536B'."""
    for unit, mult in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= mult and n_bytes % mult == 0:
            return f"{n_bytes // mult}{unit}"
    return f"{n_bytes}B"


def check_queue_depth(value: object, *, key: str = "queue_depth",
                      file: str | None = None) -> int:
    """`value` as a queue depth, 1 to MAX_QUEUE_DEPTH; InputError otherwise (`True` is not 1)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value \
        and float(value).is_integer() and 1 <= value <= MAX_QUEUE_DEPTH
    if not ok:
        raise InputError(f"queue depth {value!r} is out of range", file=file, key=key,
                         expected=f"a whole number from 1 to {MAX_QUEUE_DEPTH}")
    return int(value)  # type: ignore[arg-type]


def parse_int_list(text: str | list[int], *, key: str, minimum: int = 1) -> list[int]:
    """`1,8,32` → [1, 8, 32]; each at least `minimum` (a list already parsed by an argparse
    type is checked and returned)."""
    if isinstance(text, list | tuple):
        text = ",".join(str(v) for v in text)
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{text!r} is not a comma-separated list of integers", key=key) from None
    if not values or any(v < minimum for v in values):
        raise InputError(f"{text!r}: every value must be ≥ {minimum}", key=key)
    return values


def parse_size_list(text: str | list[int], *, key: str) -> list[int]:
    """`4k,32k,1m` → byte counts (a list already parsed by an argparse type is checked)."""
    if isinstance(text, list | tuple):
        return [parse_size(v, key=key) for v in text]
    return [parse_size(v.strip(), key=key) for v in text.split(",") if v.strip()]
