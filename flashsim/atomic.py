"""Write files so that nothing half-written is ever left behind: temp file, fsync, rename."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import InputError


def check_free_space(path: str | os.PathLike, needed_bytes: int) -> None:
    """Raise InputError when the file system holding `path` has less than `needed_bytes` free."""
    folder = Path(path).resolve().parent
    while not folder.exists():
        folder = folder.parent
    free_bytes = shutil.disk_usage(folder).free
    if free_bytes < needed_bytes:
        raise InputError(f"not enough free disk space: {needed_bytes} bytes needed, "
                         f"{free_bytes} free", file=path)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Yield a temp file next to `path`; on success fsync and rename it onto `path`.

    On any exception (a full disk included) the temp file is removed and `path` is untouched.
    """
    target = Path(path)
    if not target.parent.exists():
        raise InputError("folder does not exist", file=target.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".flashsim-tmp-{target.name}.", dir=target.parent)
    # mkstemp makes 0600 files; give the result the mode a plain open() would have
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except OSError as exc:
        _remove_quietly(tmp_name)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InputError("disk full while writing; nothing was written", file=target) from exc
        raise
    except BaseException:
        _remove_quietly(tmp_name)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)
