"""argparse value types that check a value's unit, range and writability as it is parsed.

Every CLI option that takes a size, a count, a rate or an output path uses one of these, so
bad input is refused before any work is done (and before anything is allocated or written),
always as the one `InputError` naming the option: one line and exit 2 from `cli.main`.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import InputError
from .units import MAX_QUEUE_DEPTH, format_size, parse_int_list, parse_size, parse_size_list


def size(flag: str, *, minimum: int = 1, maximum: int | None = None,
         power_of_two: bool = False) -> Callable[[str], int]:
    """Bytes from `4k`, `32KiB`, `1m`, within [minimum, maximum] (0 allowed if minimum is 0)."""
    def parse(text: str) -> int:
        n = parse_size(text, key=flag, allow_zero=minimum <= 0)
        _check_range(n, flag, minimum, maximum, show=format_size)
        if power_of_two and n & (n - 1):
            raise InputError(f"{text!r} is not a power of two", key=flag,
                             expected="a power of two such as 512, 4k or 64k")
        return n
    return parse


def sizes(flag: str) -> Callable[[str], list[int]]:
    """A comma-separated list of sizes (`4k,32k,1m`), each a positive byte count."""
    def parse(text: str) -> list[int]:
        values = parse_size_list(text, key=flag)
        if not values:
            raise InputError(f"{text!r} holds no size", key=flag, expected="sizes like 4k,32k")
        return values
    return parse


def chunk_qd_pairs(flag: str, *, max_qd: int = MAX_QUEUE_DEPTH) -> Callable[[str], str]:
    """`12k/3,48k/12` (or `12kx3`): chunk/QD pairs, each size and queue depth in range; the
    text is returned for the command's own parser."""
    def parse(text: str) -> str:
        for item in (t.strip() for t in text.split(",")):
            parts = item.replace("x", "/").split("/") if item else []
            if len(parts) != 2:
                raise InputError(f"{item!r} is not a chunk/QD pair", key=flag,
                                 expected="CHUNK/QD pairs like 12k/3,48k/12")
            parse_size(parts[0].strip(), key=flag)
            count(flag, maximum=max_qd, what="queue depth")(parts[1])
        return text
    return parse


def count(flag: str, *, minimum: int = 1, maximum: int | None = None,
          what: str = "") -> Callable[[str], int]:
    """A whole number within [minimum, maximum]; `what` names it in the error."""
    prefix = f"{what} " if what else ""

    def parse(text: str) -> int:
        try:
            n = int(str(text).strip())
        except ValueError:
            raise InputError(f"{prefix}{text!r} is not a whole number", key=flag,
                             expected=_span(minimum, maximum)) from None
        _check_range(n, flag, minimum, maximum, prefix=prefix)
        return n
    return parse


def queue_depth(flag: str = "--qd") -> Callable[[str], int]:
    """Reads in flight: 1 to MAX_QUEUE_DEPTH (refused before any per-read array exists)."""
    return count(flag, minimum=1, maximum=MAX_QUEUE_DEPTH, what="queue depth")


def queue_depths(flag: str = "--qd", *,
                 maximum: int = MAX_QUEUE_DEPTH) -> Callable[[str], list[int]]:
    """A comma-separated list of queue depths (`1,8,32`), each 1 to `maximum`."""
    return counts(flag, minimum=1, maximum=maximum, what="queue depth")


def counts(flag: str, *, minimum: int = 1, maximum: int | None = None,
           what: str = "") -> Callable[[str], list[int]]:
    """A non-empty comma-separated list of whole numbers (`1,4,16`) within [minimum, maximum]."""
    prefix = f"{what} " if what else ""

    def parse(text: str) -> list[int]:
        values = parse_int_list(text, key=flag, minimum=minimum)
        for v in values:
            _check_range(v, flag, minimum, maximum, prefix=prefix)
        return values
    return parse


def number(flag: str, *, minimum: float | None = None, maximum: float | None = None,
           above: float | None = None, below: float | None = None) -> Callable[[str], float]:
    """A finite float in a range: `minimum`/`maximum` inclusive, `above`/`below` exclusive."""
    def parse(text: str) -> float:
        try:
            x = float(str(text).strip())
        except ValueError:
            x = math.nan
        ok = (math.isfinite(x) and (minimum is None or x >= minimum)
              and (maximum is None or x <= maximum) and (above is None or x > above)
              and (below is None or x < below))
        if not ok:
            raise InputError(f"{text!r} is out of range", key=flag,
                             expected=_float_span(minimum, maximum, above, below))
        return x
    return parse


def probability(flag: str) -> Callable[[str], float]:
    """A share or probability: a finite number from 0 to 1."""
    return number(flag, minimum=0.0, maximum=1.0)


def seed(flag: str = "--seed") -> Callable[[str], int]:
    """A random seed: 0 to 2**32 - 1, what every generator in use accepts."""
    return count(flag, minimum=0, maximum=2**32 - 1)


def rate(flag: str) -> Callable[[str], float]:
    """A positive finite rate (GB/s, MB/s, IOPS): 0, negative, NaN and inf are refused."""
    return number(flag, above=0.0, maximum=1e9)


def out_file(flag: str, *, suffixes: tuple[str, ...] = ()) -> Callable[[str], str]:
    """A file path that can be written: not a folder, in an existing writable folder, with
    one of `suffixes` (if given; "" admits a path without one). Checked before any work, so
    a run never ends on it."""
    def parse(text: str) -> str:
        path = Path(text)
        if not text.strip() or "\0" in text:
            raise InputError("empty path or a NUL byte in it", key=flag, expected="a file path")
        if suffixes and path.suffix.lower() not in suffixes:
            raise InputError(f"unsupported file type {path.suffix or '(none)'!r}", file=path,
                             key=flag, expected="a path ending "
                             + " or ".join(x for x in suffixes if x))
        if path.is_dir():
            raise InputError("is a folder", file=path, key=flag, expected="a file path")
        folder = path.parent
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "folder does not exist"
            raise InputError(what, file=folder, key=flag, expected="an existing folder")
        if path.exists() and not os.access(path, os.W_OK):
            raise InputError("file is not writable", file=path, key=flag)
        _probe_writable(folder, flag)
        return text
    return parse


def out_dir(flag: str) -> Callable[[str], str]:
    """A folder to write into: an existing writable folder, or one that can be made (its
    nearest existing parent is a writable folder)."""
    def parse(text: str) -> str:
        if not text.strip() or "\0" in text:
            raise InputError("empty path or a NUL byte in it", key=flag,
                             expected="a folder path")
        path = Path(text)
        if path.exists() and not path.is_dir():
            raise InputError("is not a folder", file=path, key=flag, expected="a folder path")
        existing = path
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise InputError("is not a folder", file=existing, key=flag,
                             expected="a folder path")
        _probe_writable(existing, flag)
        return text
    return parse


def _probe_writable(folder: Path, flag: str) -> None:
    """Create and remove a file in `folder`: the one test that also holds for root, a
    read-only mount and an ACL (os.access answers yes to root on a read-only file system)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".flashsim-probe-", dir=folder)
    except OSError as exc:
        raise InputError(f"folder is not writable ({exc.strerror})", file=folder,
                         key=flag) from None
    os.close(fd)
    os.unlink(name)


def _check_range(n: int, flag: str, minimum: int | None, maximum: int | None,
                 show: Callable[[int], str] | None = None, prefix: str = "") -> None:
    if (minimum is not None and n < minimum) or (maximum is not None and n > maximum):
        shown = show(n) if show and n > 0 else str(n)
        raise InputError(f"{prefix}{shown} is out of range", key=flag,
                         expected=_span(minimum, maximum, show))


def _span(minimum: int | None, maximum: int | None,
          show: Callable[[int], str] | None = None) -> str:
    noun = "a size" if show else "a whole number"
    s = lambda v: show(v) if show and v > 0 else str(v)  # noqa: E731
    if maximum is None:
        return noun if minimum is None else f"{noun} ≥ {s(minimum)}"
    return f"{noun} ≤ {s(maximum)}" if minimum is None else \
        f"{noun} from {s(minimum)} to {s(maximum)}"


def _float_span(minimum, maximum, above, below) -> str:
    low = f"≥ {minimum:g}" if minimum is not None else (f"> {above:g}" if above is not None
                                                        else "")
    high = f"≤ {maximum:g}" if maximum is not None else (f"< {below:g}" if below is not None
                                                         else "")
    return "a finite number " + " and ".join(p for p in (low, high) if p)
