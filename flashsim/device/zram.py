"""A zram block device (compressed RAM disk) sized, filled with random data, and reset.

zram is a real block device with a request path but no flash behind it: a read costs the
block layer plus a page copy (random data does not compress, so zram stores each page
whole), which gives a device with microsecond latency and memory-bound bandwidth to test
the model on. Its data lives in RAM until `reset`.
"""

from __future__ import annotations

import errno
import mmap
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from ..errors import InputError

SYS_BLOCK = Path("/sys/block")
FILL_BLOCK_BYTES = 16 << 20
"""Bytes written per O_DIRECT write while filling (a page-aligned buffer of this size)."""


class Zram:
    """/dev/<name> (default zram0) and its sysfs directory."""

    def __init__(self, name: str = "zram0", sys_block: Path = SYS_BLOCK,
                 dev_dir: Path = Path("/dev")) -> None:
        self.name = name
        self.sys = Path(sys_block) / name
        self.path = Path(dev_dir) / name

    def ensure_module(self) -> None:
        """Load the zram module if its device is missing (InputError if it cannot be)."""
        if self.sys.exists() and self.path.exists():
            return
        modprobe = shutil.which("modprobe")
        if modprobe:
            subprocess.run([modprobe, "zram"], capture_output=True, check=False)
            for _ in range(50):  # udev creates the node shortly after the module loads
                if self.sys.exists() and self.path.exists():
                    return
                time.sleep(0.02)
        raise InputError("no zram device (the zram module is not loaded and cannot be)",
                         file=self.path, expected="a kernel with zram (modprobe zram)")

    def disksize_bytes(self) -> int:
        """0 when the device is unused (reset), else its configured size."""
        try:
            return int((self.sys / "disksize").read_text())
        except FileNotFoundError:
            return 0

    def check_free(self) -> None:
        """InputError when the device is already set up (in use: swap, another testbed)."""
        size = self.disksize_bytes()
        if size:
            raise InputError(f"device busy: disksize is {size} bytes", file=self.path,
                             expected="an unused zram device (disksize 0; flashsim device "
                                      "testbed down zram if a testbed left it)")

    def setup(self, size_bytes: int, comp_algorithm: str | None = None) -> None:
        """Set the compressor (optional) and disksize; the device must be free."""
        self.check_free()
        if comp_algorithm:
            offered = (self.sys / "comp_algorithm").read_text().replace("[", "").replace("]", "")
            if comp_algorithm not in offered.split():
                raise InputError(f"compressor {comp_algorithm!r} is not offered",
                                 file=self.sys / "comp_algorithm",
                                 expected=f"one of {', '.join(offered.split())}")
            self._write("comp_algorithm", comp_algorithm)
        self._write("disksize", str(int(size_bytes)))

    def _write(self, name: str, text: str) -> None:
        try:
            (self.sys / name).write_text(text + "\n")
        except OSError as exc:
            raise InputError(f"cannot write {text!r}: {exc.strerror}",
                             file=self.sys / name) from None

    def fill_random(self, seed: int | None = 0) -> int:
        """Write random (incompressible) bytes over the whole device with O_DIRECT, so no
        copy stays in the page cache; returns the bytes written."""
        total = self.disksize_bytes()
        rng = np.random.default_rng(seed)
        buf = mmap.mmap(-1, FILL_BLOCK_BYTES)  # page aligned, as O_DIRECT needs
        fd = os.open(self.path, os.O_WRONLY | os.O_DIRECT)
        try:
            done = 0
            while done < total:
                n = min(FILL_BLOCK_BYTES, total - done)
                buf[:n] = rng.bytes(n)
                done += os.pwritev(fd, [memoryview(buf)[:n]], done)
            os.fsync(fd)
        finally:
            os.close(fd)
            buf.close()
        return done

    def stats(self) -> dict[str, int]:
        """mm_stat: original and stored bytes, memory used (how much compression saved)."""
        fields = (self.sys / "mm_stat").read_text().split()
        return {"orig_data_bytes": int(fields[0]), "compr_data_bytes": int(fields[1]),
                "mem_used_total_bytes": int(fields[2])}

    def reset(self, timeout_s: float = 5.0) -> None:
        """Free the device (its data and memory); retried while a closing reader still holds
        it open (EBUSY). A no-op when it is already reset."""
        deadline = time.monotonic() + timeout_s
        while self.disksize_bytes():
            try:
                (self.sys / "reset").write_text("1\n")
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise InputError(f"cannot reset: {exc.strerror} (a process still has it "
                                     "open?)", file=self.sys / "reset") from None
            if self.disksize_bytes() and time.monotonic() > deadline:
                raise InputError("reset did not free the device", file=self.sys / "reset")
            time.sleep(0.05)
