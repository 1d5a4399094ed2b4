"""A cgroup v1 blkio group whose read IOPS and bandwidth on one disk are throttled.

Linux's blk-throttle delays each bio a process in the group submits until the group's
budget allows it, so reads from the group see a slower disk with the same latency floor:
below the caps they pass untouched, above them they queue. Limits apply to whole disks
only (the kernel refuses a partition), so the disk under a file is found through sysfs.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

from ..errors import InputError

MOUNTS = "/proc/mounts"
SYS_DEV_BLOCK = Path("/sys/dev/block")


def v1_root(controller: str, mounts: str | os.PathLike = MOUNTS) -> Path:
    """Mount point of the cgroup v1 hierarchy that has `controller` (blkio, memory)."""
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "cgroup" and controller in parts[3].split(","):
            return Path(parts[1].replace("\\040", " "))
    raise InputError(f"no cgroup v1 {controller} hierarchy is mounted", file=mounts,
                     expected=f"a 'cgroup ... {controller}' line "
                              f"(mount -t cgroup -o {controller} ...)")


def blkio_root(mounts: str | os.PathLike = MOUNTS) -> Path:
    """Mount point of the cgroup v1 hierarchy that has the blkio controller."""
    return v1_root("blkio", mounts)


def disk_of(path: str | os.PathLike, sys_dev_block: Path = SYS_DEV_BLOCK) -> tuple[int, int, str]:
    """(major, minor, name) of the whole disk holding `path` (a file, or a block device node)."""
    st = os.stat(path)
    dev = st.st_rdev if stat.S_ISBLK(st.st_mode) else st.st_dev
    major, minor = os.major(dev), os.minor(dev)
    node = sys_dev_block / f"{major}:{minor}"
    if not node.exists():
        raise InputError(f"device {major}:{minor} is not a block device (a virtual or network "
                         "file system?)", file=path, expected="a file on a local disk")
    node = node.resolve()
    if (node / "partition").exists():  # a partition: blk-throttle limits its parent disk
        node = node.parent
    major, minor = (int(x) for x in (node / "dev").read_text().split(":"))
    return major, minor, node.name


class BlkioGroup:
    """A new blkio cgroup `name` under `root` with read caps on one disk; `remove()` undoes it."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = Path(root)
        self.dir = self.root / name

    @property
    def procs_file(self) -> Path:
        return self.dir / "cgroup.procs"

    def create(self, major: int, minor: int, *, iops: int, bps: int) -> None:
        """mkdir the group and set its read caps (InputError if it exists: in use)."""
        try:
            self.dir.mkdir()
        except FileExistsError:
            raise InputError("cgroup exists: in use, or left by a killed run", file=self.dir,
                             expected="no such group (flashsim device testbed down, or rmdir "
                                      "it)") from None
        except OSError as exc:
            raise InputError(f"cannot create cgroup: {exc.strerror}", file=self.dir) from None
        self._write("blkio.throttle.read_iops_device", f"{major}:{minor} {int(iops)}")
        self._write("blkio.throttle.read_bps_device", f"{major}:{minor} {int(bps)}")

    def _write(self, name: str, text: str) -> None:
        try:
            (self.dir / name).write_text(text + "\n")
        except OSError as exc:
            raise InputError(f"cannot write {text!r}: {exc.strerror}", file=self.dir / name,
                             expected="a whole disk that blk-throttle accepts") from None

    def caps(self) -> dict[str, str]:
        """The group's read caps as the kernel reports them ('MAJ:MIN value' lines)."""
        return {k: (self.dir / f"blkio.throttle.{k}").read_text().strip()
                for k in ("read_iops_device", "read_bps_device")}

    def serviced_reads(self, major: int, minor: int) -> int:
        """Reads the group has issued to the disk (blkio.throttle.io_serviced)."""
        for line in (self.dir / "blkio.throttle.io_serviced").read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == f"{major}:{minor}" and parts[1] == "Read":
                return int(parts[2])
        return 0

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in self.procs_file.read_text().split()]
        except FileNotFoundError:
            return []

    def remove(self, timeout_s: float = 5.0) -> None:
        """Move any process still inside to the parent group, then rmdir (retried while the
        kernel still counts a moved or exiting task); no-op if the group is gone."""
        deadline = time.monotonic() + timeout_s
        while self.dir.exists():
            for pid in self.pids():
                try:
                    (self.root / "cgroup.procs").write_text(f"{pid}\n")
                except OSError:
                    pass  # exited meanwhile
            try:
                self.dir.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


# ---- memory: a page-cache budget ----------------------------------------------------------

def memory_root(mounts: str | os.PathLike = MOUNTS) -> Path:
    """Mount point of the cgroup v1 hierarchy with the memory controller; InputError (one
    line) when not root or there is none: a budget needs `memory.limit_in_bytes`."""
    if os.geteuid() != 0:
        raise InputError("a memory cgroup needs root", key="budget",
                         expected="run as root (cgroup v1 memory.limit_in_bytes)")
    return v1_root("memory", mounts)


class MemoryGroup(BlkioGroup):
    """A new memory cgroup `name` under `root`: its limit charges the page cache of the reads
    its processes cause (and their own memory); `remove()` moves them out and rmdirs it."""

    def create(self) -> None:  # type: ignore[override]
        """mkdir the group, no limit yet (InputError if it exists: in use)."""
        try:
            self.dir.mkdir()
        except FileExistsError:
            raise InputError("cgroup exists: in use, or left by a killed run", file=self.dir,
                             expected="no such group (rmdir it)") from None
        except OSError as exc:
            raise InputError(f"cannot create cgroup: {exc.strerror}", file=self.dir) from None

    def join(self, pid: int) -> None:
        """Move process `pid` into the group: what it charges from now on counts here."""
        self.procs_file.write_text(f"{int(pid)}\n")

    def set_limit(self, limit_bytes: int) -> None:
        self._write("memory.limit_in_bytes", str(int(limit_bytes)))

    def usage_bytes(self) -> int:
        return int((self.dir / "memory.usage_in_bytes").read_text())

    def oom_kills(self) -> int:
        """Processes of the group the kernel killed for want of memory (memory.oom_control)."""
        for line in (self.dir / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def stat(self) -> dict[str, int]:
        """memory.stat as numbers (cache, rss, mapped_file, pgmajfault, ...)."""
        out = {}
        for line in (self.dir / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            out[key] = int(value)
        return out


def read_ahead_bytes(path: str | os.PathLike, sys_block: Path = Path("/sys/block")) -> int:
    """The read-ahead window of the disk holding `path` (`queue/read_ahead_kb`), bytes: what
    the kernel's mmap read-around reads around a faulting page."""
    _, _, name = disk_of(path)
    try:
        return int((sys_block / name / "queue" / "read_ahead_kb").read_text()) * 1024
    except (OSError, ValueError):
        raise InputError("cannot read the disk's read-ahead", file=sys_block / name / "queue"
                         / "read_ahead_kb", expected="a block device with a queue") from None
