"""Progress bars on a terminal, silence in CI and under --json."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled(quiet: bool = False) -> bool:
    """True when a bar is wanted: stderr is a terminal, not CI, not quiet (--json)."""
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "",
             quiet: bool = False) -> Iterator[T]:
    """Wrap `items` in a tqdm bar when `progress_enabled`, else yield them as they are."""
    if not progress_enabled(quiet):
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=desc, leave=False, file=sys.stderr)
