"""Start, find, measure and stop the local runtime's processes.

Each process runs in a session of its own (so its children share its process group),
writes stdout and stderr to ``<home>/logs/<name>.log``, and is remembered by a pid file
holding its pid and kernel start time, so a recycled pid is never mistaken for it.

Privacy: every process starts with umask 0o077, so the data and log files it creates are
its owner's only; log and pid files are 0600 and their directories 0700. Command lines are
visible to every account (``ps``), and are copied into the log header and the pid file:
secrets go to a process through its environment (``/proc/PID/environ`` is owner-only) or a
0600 file, never through ``argv``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..settings import Settings, private_dir


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie is as good as gone
        return None
    return int(fields[19])


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    return _start_ticks(pid) is not None


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


#: The umask of every process the runtime starts: files it creates are private.
UMASK = 0o077


def _private_file(path: Path, flags: int) -> int:
    """Open ``path`` with ``flags``, created 0600 (and tightened to 0600 if it exists)."""
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return fd


def temp_dir(settings: Settings, name: str) -> Path:
    """Process ``name``'s own temporary directory, ``<state>/tmp/<name>`` (0700)."""
    return settings.home / "tmp" / name


def temp_env(settings: Settings, name: str, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the process's temporary files sent to :func:`temp_dir`, emptied first.

    Left to themselves they all use the machine's shared /tmp: Python's tempfile, every JVM
    (``java.io.tmpdir``: lz4's and snappy's native libraries, Spark's block managers), and
    Vert.x's cache under the registry's Quarkus. Nothing removed them, and a directory one
    account left there (``/tmp/vertx-cache``, made by a root run) stopped another account's
    registry from starting. ``TMPDIR`` covers Python and native code; ``JAVA_TOOL_OPTIONS`` every
    JVM, the ones the JVMs start (Spark's executors, the job's driver) included."""
    tmp = temp_dir(settings, name)
    if tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)  # the last run's: nothing runs from it now
    private_dir(tmp)
    if any(c.isspace() for c in str(tmp)):  # JAVA_TOOL_OPTIONS splits on whitespace: Python's only
        return {**env, "TMPDIR": str(tmp)}
    java = f"-Djava.io.tmpdir={tmp} -Dvertx.cacheDirBase={tmp / 'vertx-cache'}"
    inherited = env.get("JAVA_TOOL_OPTIONS", "")
    return {**env, "TMPDIR": str(tmp), "JAVA_TOOL_OPTIONS": f"{inherited} {java}".strip()}


def spawn(
    settings: Settings,
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start ``argv`` detached, logging to the process's log file; return its pid. Its
    temporary files go to its own directory (:func:`temp_env`), unless it runs as another
    ``user``, which could not enter the state directory."""
    if user is None:
        env = temp_env(settings, name, os.environ if env is None else env)
    private_dir(settings.run_dir)
    private_dir(settings.logs_dir)
    log_path = settings.log_file(name)
    with os.fdopen(_private_file(log_path, os.O_WRONLY | os.O_APPEND), "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(cwd) if cwd else None,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            user=user,
            umask=UMASK,
            close_fds=True,
        )
    ticks = _start_ticks(proc.pid)
    with os.fdopen(_private_file(_pid_file(settings, name), os.O_WRONLY | os.O_TRUNC), "w") as fh:
        fh.write(json.dumps({"pid": proc.pid, "start": ticks, "argv": list(argv)}))
    # The Popen object is dropped on purpose: the process outlives this CLI call.
    # Mark it as reaped-by-someone-else so Python does not warn about it.
    proc.returncode = 0
    return proc.pid


def pid_of(settings: Settings, name: str) -> int | None:
    """The pid of a running process we started, else None (stale pid files are removed)."""
    path = _pid_file(settings, name)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = int(record["pid"])
    if _start_ticks(pid) is None or _start_ticks(pid) != record.get("start"):
        _end_orphans(pid)
        path.unlink(missing_ok=True)
        return None
    return pid


def _end_orphans(leader: int) -> None:
    """SIGKILL what is left of a dead leader's process group.

    Every process starts its own session (``spawn``), so its group id is its pid, and the
    kernel gives no new process a pid that is still a live group's id: the group's members
    are the leader's survivors. Forgetting them with the pid file left a crashed service's
    children (an interrupted ``spark start`` left a job) running untracked, and the next
    start ran a second one beside them (issue 23)."""
    for member in group_members(leader):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our own child (only within one CLI call)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live, non-zombie process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def group_members(pgid: int) -> list[int]:
    """Pids of every live process in the process group ``pgid``."""
    return sorted(pid for pid, (_, group) in _proc_table().items() if group == pgid)


def tree(pid: int) -> list[int]:
    """The process, its descendants and its process group.

    Descendants matter: PostgreSQL's backends, for one, leave the postmaster's process group.
    """
    table = _proc_table()
    if pid not in table:
        return sorted(p for p, (_, group) in table.items() if group == pid)
    found = {pid} | {p for p, (_, group) in table.items() if group == pid}
    frontier = list(found)
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _) in table.items():
            if ppid == parent and child not in found:
                found.add(child)
                frontier.append(child)
    return sorted(found)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by the process and its tree: each live member's
    own, plus what its exited children used once it reaped them (cutime, cstime). Without the
    latter, PostgreSQL's backends and Spark's Python workers took their CPU with them when
    they exited, and a window's difference came out negative."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / ticks


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (every core, every process) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of the process and everything in its tree."""
    total = 0
    for member in tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def stop(settings: Settings, name: str, *, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
    """Stop a process: ``sig`` to it, wait up to ``timeout``, then SIGKILL what is left of its tree.

    Returns True if it was running. Leaves no process of its tree behind.
    """
    pid = pid_of(settings, name)
    if pid is None:
        return False
    # Remember the tree now: children orphaned by the leader's exit are re-parented to init.
    members = {member: _start_ticks(member) for member in tree(pid)}

    def alive() -> list[int]:
        _reap(pid)
        still = [m for m, ticks in members.items() if ticks is not None and _start_ticks(m) == ticks]
        return sorted(set(still) | set(group_members(pid)))

    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    for member in alive():
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # SIGKILL is not instant; wait until the kernel has really removed them.
    for _ in range(100):
        if not alive():
            break
        time.sleep(0.1)
    _pid_file(settings, name).unlink(missing_ok=True)
    return True


def human_bytes(n: int) -> str:
    """A size as people read it: 512 B, 1.5 MiB, 2.0 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on (or holds) host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def log_since_start(settings: Settings, name: str, *, limit: int = 1 << 20, chunk: int = 1 << 20) -> str:
    """The first ``limit`` bytes that process ``name`` logged since it was last started (from
    :func:`spawn`'s header line on); '' if there is no log. The header is found reading
    backwards, each piece searched once (with an overlap for a header cut in two)."""
    header = re.compile(rb"\n=== [0-9-]+ [0-9:]+ starting " + re.escape(name.encode()) + rb": ")
    overlap = 200 + len(name)
    try:
        with open(settings.log_file(name), "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            found = 0
            while end > 0:
                start = max(0, end - chunk)
                fh.seek(start)
                piece = fh.read(end - start + overlap)
                hits = [m.start() for m in header.finditer(piece)]
                if hits:
                    found = start + hits[-1]
                    break
                end = start
            fh.seek(found)
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
