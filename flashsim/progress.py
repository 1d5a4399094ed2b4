"""Progress bars on a terminal; silence in CI, under --json and in library calls by default.

A bar shows when it is wanted and stderr can show it.
- Wanted: the caller passed `quiet=False`; or it passed nothing (`quiet=None`, the steps deep
  in the API that take no flag, such as the calibrations run on first use) inside
  `progress_shown(True)`, which the CLI sets around every command not run with --json.
- Shown: stderr is a terminal and $CI is unset; FLASHSIM_PROGRESS=1 forces bars anyway (a
  log file, a test) and FLASHSIM_PROGRESS=0 turns every bar off. --json always wins.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")

FORCE_ENV = "FLASHSIM_PROGRESS"
_OFF = ("0", "false", "no", "off")
_SHOWN: ContextVar[bool] = ContextVar("flashsim_progress_shown", default=False)


def progress_enabled(quiet: bool | None = None) -> bool:
    """True when a bar is wanted (see the module doc) and stderr can show it."""
    wanted = _SHOWN.get() if quiet is None else not quiet
    if not wanted:
        return False
    forced = os.environ.get(FORCE_ENV, "").strip().lower()
    if forced:
        return forced not in _OFF
    return sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def progress_shown(show: bool | None = True) -> Iterator[None]:
    """Within: bars not told otherwise (`quiet=None`) are wanted (`show`) or not; None keeps
    the surrounding choice."""
    if show is None:
        yield
        return
    token = _SHOWN.set(bool(show))
    try:
        yield
    finally:
        _SHOWN.reset(token)


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "",
             quiet: bool | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap `items` in a tqdm bar when `progress_enabled(quiet)`, else yield them as they are."""
    if not progress_enabled(quiet):
        yield from items
        return
    from tqdm import tqdm  # only when a bar shows

    yield from tqdm(items, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)


@contextmanager
def progress_counter(desc: str, *, total: int | None = None, unit: str = "it",
                     quiet: bool | None = None) -> Iterator[Callable[[int], None]]:
    """A bar advanced by hand, `tick(n=1)`, for a step that is not one loop over items."""
    if not progress_enabled(quiet):
        yield lambda n=1: None
        return
    from tqdm import tqdm

    with tqdm(desc=desc, total=total, unit=unit, leave=False, file=sys.stderr) as bar:
        yield bar.update
