"""Three real block devices to test the device model on devices it was not fitted to.

- `virtio`: this machine's disk as it is, a file of random data on the file system of `dir`;
- `throttled`: the same disk behind a cgroup v1 blkio throttle (read IOPS and bytes/s caps),
  read by a child process started inside the group: an eMMC 5.1-like phone storage by
  default (15 000 IOPS, 300 MB/s), below this VM's disk (~55 000 IOPS at 4 KiB QD 32,
  ~1 GB/s at 1 MiB) so the caps, not the disk, set the plateau;
- `zram`: /dev/zram0 filled with random (incompressible) data, read with O_DIRECT straight
  from the block device: microsecond latency, memory-bound bandwidth;
- `zram-ext4`: ext4 on /dev/zram0, mounted in the state folder, with a random-data file in
  it: the same RAM-backed device under a file system, for what needs files (weight stores,
  `flashsim validate`: `{dir}` in a command is the mounted folder).

Every resource a testbed makes (data file, cgroup, zram contents) is recorded in a state
file before it is made and removed by `down()`, also on SIGINT/SIGTERM/SIGHUP, so a
testbed brought `up` by one command is taken `down` by another, and one left by a killed
process can be cleaned by `flashsim device testbed down NAME`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.reader import ALIGN_BYTES
from .calibrate import ensure_data_file
from .cgroup import BlkioGroup, blkio_root, disk_of
from .zram import Zram

KINDS = ("virtio", "throttled", "zram", "zram-ext4")
DEFAULT_SIZE_BYTES = 1 << 30
THROTTLE_IOPS = 15_000
"""eMMC 5.1-like random-read cap (datasheets: ~10-15k IOPS at 4 KiB), under this disk's
~11.5k IOPS at QD 1 only slightly, so QD 1 stays latency-bound and deeper queues plateau."""
THROTTLE_MB_S = 300.0
"""eMMC 5.1-like sequential-read cap (datasheets: 250-330 MB/s), a third of this disk's."""
CGROUP_PREFIX = "flashsim-testbed-"
DATA_FILE_PREFIX = "flashsim-testbed-"
ENV_NAME, ENV_PATH = "FLASHSIM_TESTBED", "FLASHSIM_TESTBED_PATH"
PATH_PLACEHOLDER = "{path}"
DIR_PLACEHOLDER = "{dir}"
ENV_DIR = "FLASHSIM_TESTBED_DIR"
EXT4_ROOM = 1.25
"""zram-ext4: the device is this much bigger than the data file (ext4's metadata, journal)..."""
EXT4_EXTRA_BYTES = 1536 << 20
"""...plus this much: room for weight stores and a 1 GiB calibration file beside the data."""
STOP_GRACE_S = 10.0


def state_dir() -> Path:
    """Where testbeds record their state: /run/flashsim (root), else a per-user /tmp folder."""
    return Path("/run/flashsim") if os.geteuid() == 0 else Path(f"/tmp/flashsim-{os.geteuid()}")


def check_kind(name: str) -> str:
    if name not in KINDS:
        raise InputError(f"unknown testbed {name!r}", key="NAME", expected=", ".join(KINDS))
    return name


def default_state_file(name: str) -> Path:
    return state_dir() / f"testbed-{check_kind(name)}.json"


class TestbedInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP turned into an exception, so `finally` blocks clean up."""

    __test__ = False  # not a pytest test class

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise TestbedInterrupted(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise TestbedInterrupted (SIGINT raises KeyboardInterrupt as usual)
    while inside; only the main thread can install handlers, elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP while tearing down, so a second Ctrl-C cannot leave half a
    testbed; they are delivered when the block ends."""
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@dataclass
class TestbedState:
    """What a testbed is made of; written to its state file before anything is created."""

    __test__ = False

    name: str
    path: str = ""
    data_file: str | None = None  # a file this testbed creates and deletes
    cgroup: str | None = None  # the blkio group's directory
    device: str | None = None  # MAJ:MIN of the throttled disk
    disk: str | None = None
    iops: int | None = None
    bps: int | None = None
    zram: str | None = None
    mount: str | None = None  # zram-ext4: where the file system is mounted
    comp_algorithm: str | None = None
    size_bytes: int = DEFAULT_SIZE_BYTES
    persistent: bool = False  # brought up by `up`, taken down by `down`
    owner_pid: int = field(default_factory=os.getpid)
    created_unix_s: float = field(default_factory=time.time)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TestbedState:
        try:
            data = json.loads(Path(path).read_text())
            return cls(**data)
        except FileNotFoundError:
            raise InputError("no such testbed state (is it up?)", file=path) from None
        except (ValueError, TypeError) as exc:
            raise InputError(f"not a testbed state file: {exc}", file=path) from None


class Testbed:
    """One testbed: `up()` makes it, `path` is what to read, `run(cmd)` runs a command on it
    (inside the throttle group for `throttled`), `down()` removes everything it made.

    As a context manager it is up inside the block and down after it, SIGTERM included.
    """

    __test__ = False

    def __init__(self, name: str, *, dir: str | os.PathLike = ".",
                 size_bytes: int = DEFAULT_SIZE_BYTES, iops: int = THROTTLE_IOPS,
                 mb_s: float = THROTTLE_MB_S, comp_algorithm: str | None = None,
                 state_file: str | os.PathLike | None = None, persistent: bool = False,
                 seed: int = 0) -> None:
        check_kind(name)
        if size_bytes <= 0 or size_bytes % ALIGN_BYTES:
            raise InputError(f"size {size_bytes} is not a positive multiple of {ALIGN_BYTES}",
                             key="size")
        if name == "throttled" and (int(iops) < 1 or mb_s <= 0):
            raise InputError(f"caps {iops} IOPS, {mb_s} MB/s", key="iops",
                             expected="positive read IOPS and MB/s caps")
        self.dir = Path(dir)
        self.seed = seed
        self.state_file = Path(state_file) if state_file else default_state_file(name)
        self.state = TestbedState(name=name, size_bytes=int(size_bytes),
                                  comp_algorithm=comp_algorithm, persistent=persistent)
        if name == "throttled":
            self.state.iops, self.state.bps = int(iops), int(round(mb_s * 1e6))
        self._signals: contextlib.ExitStack | None = None

    @classmethod
    def attach(cls, name: str, state_file: str | os.PathLike | None = None) -> Testbed:
        """The testbed recorded in a state file (brought up by `up` in another process)."""
        path = Path(state_file) if state_file else default_state_file(name)
        state = TestbedState.load(path)
        if state.name != name:
            raise InputError(f"state is of testbed {state.name!r}, not {name!r}", file=path)
        bed = cls.__new__(cls)
        bed.dir, bed.seed, bed.state_file, bed.state, bed._signals = Path("."), 0, path, state, None
        return bed

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def path(self) -> str:
        """The data file or block device to read."""
        return self.state.path

    # -- setting up ---------------------------------------------------------------------

    def preflight(self) -> None:
        """Refuse (InputError) before anything is made: not root, no blkio v1 hierarchy, no
        zram, something busy; fills in what the state will hold."""
        s = self.state
        if self.state_file.exists():
            raise InputError("testbed is already up (or was left by a killed run)",
                             file=self.state_file,
                             expected=f"flashsim device testbed down {s.name} first")
        if s.name in ("throttled", "zram") and os.geteuid() != 0:
            raise InputError(f"testbed {s.name} needs root (it writes cgroup and sysfs files)",
                             key="NAME")
        if s.name in ("zram", "zram-ext4"):
            zram = Zram()
            zram.ensure_module()
            zram.check_free()
            s.zram, s.path = zram.name, str(zram.path)
            if s.name == "zram-ext4":
                if not shutil.which("mkfs.ext4"):
                    raise InputError("mkfs.ext4 not found", key="NAME",
                                     expected="e2fsprogs installed")
                s.mount = str(state_dir() / f"{s.name}-mnt")
                s.path = s.data_file = str(Path(s.mount) / f"{DATA_FILE_PREFIX}{s.name}.dat")
            return
        if not self.dir.is_dir():
            raise InputError("folder does not exist", file=self.dir, key="--dir")
        data = (self.dir / f"{DATA_FILE_PREFIX}{s.name}.dat").resolve()
        if data.exists():
            raise InputError("data file exists (left by a killed run?)", file=data,
                             expected="no such file (remove it, or --dir elsewhere)")
        s.path = s.data_file = str(data)
        if s.name == "throttled":
            root = blkio_root()
            major, minor, s.disk = disk_of(self.dir)
            s.device = f"{major}:{minor}"
            # one group per setting-up process: two throttled testbeds (other data folders,
            # other state files) do not share a budget
            s.cgroup = str(root / f"{CGROUP_PREFIX}{s.name}-{os.getpid()}")

    def up(self) -> Testbed:
        """Make the testbed; on any failure or signal, remove what was made and re-raise."""
        self.preflight()
        with signals_raise():
            self._claim_state()
            try:
                self._create()
            except BaseException:
                self.down()
                raise
        return self

    def _claim_state(self) -> None:
        """Write the state file whole and exclusively: a hard link of a finished temp file
        fails if the name exists, so two setups of one testbed cannot both win and no
        reader sees half a file."""
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self.state), indent=2) + "\n")
        try:
            os.link(tmp, self.state_file)
        except FileExistsError:
            raise InputError("testbed is already up", file=self.state_file) from None
        finally:
            tmp.unlink()

    def _create(self) -> None:
        s = self.state
        if s.mount:
            Zram(s.zram).setup(int(s.size_bytes * EXT4_ROOM) + EXT4_EXTRA_BYTES // 4096 * 4096,
                               s.comp_algorithm)
            _check_call(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", str(Zram(s.zram).path)])
            Path(s.mount).mkdir(parents=True, exist_ok=True)
            _check_call(["mount", "-o", "noatime", str(Zram(s.zram).path), s.mount])
            ensure_data_file(s.data_file, s.size_bytes, seed=self.seed)
            return
        if s.zram:
            zram = Zram(s.zram)
            zram.setup(s.size_bytes, s.comp_algorithm)
            zram.fill_random(self.seed)
            return
        if s.cgroup:
            major, minor = (int(x) for x in s.device.split(":"))
            group = BlkioGroup(Path(s.cgroup).parent, Path(s.cgroup).name)
            group.create(major, minor, iops=s.iops, bps=s.bps)
        ensure_data_file(s.data_file, s.size_bytes, seed=self.seed)

    # -- using it ---------------------------------------------------------------------

    def command(self, cmd: Sequence[str]) -> list[str]:
        """`cmd` with every `{path}` replaced by the testbed's path (and `{dir}` by the
        folder it is in: the mounted file system of zram-ext4)."""
        folder = str(Path(self.path).parent)
        return [str(c).replace(PATH_PLACEHOLDER, self.path).replace(DIR_PLACEHOLDER, folder)
                for c in cmd]

    def run(self, cmd: Sequence[str], **popen: Any) -> int:
        """Run `cmd` as a child process (inside the throttle group for `throttled`, from its
        first instruction) and return its exit code; on a signal the child gets the same
        signal (SIGKILL after STOP_GRACE_S) and the exception is re-raised."""
        if not cmd:
            raise InputError("no command to run", key="CMD", expected="-- CMD ARGS...")
        env = dict(popen.pop("env", None) or os.environ)
        env[ENV_NAME], env[ENV_PATH] = self.name, self.path
        env[ENV_DIR] = str(Path(self.path).parent)
        procs = Path(self.state.cgroup) / "cgroup.procs" if self.state.cgroup else None

        def join_group() -> None:  # runs in the child between fork and exec
            if procs is not None:
                procs.write_text(f"{os.getpid()}\n")

        with signals_raise():
            try:
                child = subprocess.Popen(self.command(cmd), env=env, preexec_fn=join_group,
                                         **popen)
            except FileNotFoundError:
                raise InputError(f"command not found: {cmd[0]}", key="CMD") from None
            try:
                return child.wait()
            except BaseException as exc:
                _stop(child, getattr(exc, "signum", signal.SIGINT))
                raise

    def group(self) -> BlkioGroup | None:
        if not self.state.cgroup:
            return None
        return BlkioGroup(Path(self.state.cgroup).parent, Path(self.state.cgroup).name)

    def describe(self) -> dict[str, Any]:
        """The state plus what the kernel reports now (caps, zram memory use)."""
        out = asdict(self.state) | {"state_file": str(self.state_file)}
        group = self.group()
        if group is not None and group.dir.exists():
            out["kernel_caps"] = group.caps()
            out["cgroup_procs"] = str(group.procs_file)
        if self.state.zram:
            zram = Zram(self.state.zram)
            if zram.disksize_bytes():
                out["zram_mm_stat"] = zram.stats()
        return out

    # -- tearing down -----------------------------------------------------------------

    def down(self) -> None:
        """Remove every resource the state names (each tried even if another fails), then
        the state file; signals wait until it is done. Re-raises the first failure."""
        s = self.state
        failures: list[BaseException] = []
        with signals_blocked():
            steps = []
            if s.data_file:
                steps.append(lambda: Path(s.data_file).unlink(missing_ok=True))
            if s.cgroup:
                steps.append(lambda: self.group().remove())
            if s.mount:
                steps.append(lambda: _unmount(Path(s.mount)))
            if s.zram:
                steps.append(lambda: Zram(s.zram).reset())
            for step in steps:
                try:
                    step()
                except Exception as exc:  # keep going: leave as little as possible behind
                    failures.append(exc)
            if not failures:
                self.state_file.unlink(missing_ok=True)
        if failures:
            raise failures[0]

    def __enter__(self) -> Testbed:
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(signals_raise())
        try:
            return self.up()
        except BaseException:
            self._signals.close()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self.down()
        finally:
            if self._signals is not None:
                self._signals.close()


def _check_call(cmd: list[str]) -> None:
    """Run a setup command; its failure is an InputError naming it and its message."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise InputError(f"{' '.join(cmd)} failed: {message[-1] if message else done.returncode}",
                         key="NAME")


def _unmount(mount: Path) -> None:
    """Unmount the testbed's file system (if mounted) and remove its empty mount point."""
    if os.path.ismount(mount):
        _check_call(["umount", str(mount)])
    with contextlib.suppress(FileNotFoundError):
        mount.rmdir()


def _stop(child: subprocess.Popen, signum: int) -> None:
    """Pass a signal on to the child, give it STOP_GRACE_S to exit, then kill it."""
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signum)
    with signals_blocked():
        try:
            child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def testbed(name: str, **options: Any) -> Testbed:
    """A Testbed to use as `with testbed("throttled", dir=..., iops=..., mb_s=...) as tb:`."""
    return Testbed(name, **options)


def status(state_folder: Path | None = None) -> dict[str, Any]:
    """Testbeds recorded in the state folder, and flashsim's live kernel resources (a cgroup
    or a zram device in use) whether recorded or not."""
    folder = state_folder or state_dir()
    beds = []
    for f in sorted(folder.glob("testbed-*.json")) if folder.is_dir() else []:
        with contextlib.suppress(InputError):
            name = TestbedState.load(f).name
            beds.append(Testbed.attach(name, f).describe())
    live: dict[str, Any] = {"cgroups": [], "zram0_disksize_bytes": Zram().disksize_bytes()}
    with contextlib.suppress(InputError):
        live["cgroups"] = [str(p) for p in blkio_root().glob(f"{CGROUP_PREFIX}*")]
    return {"state_folder": str(folder), "testbeds": beds, "live": live}
