"""The process bookkeeping of the local runtime, on throwaway processes (no service)."""

from __future__ import annotations

import os
import signal
import time

from cdc_helpers import wait_for

from cdcpipe import settings
from cdcpipe.runtime import processes


def test_a_dead_leader_s_surviving_children_are_ended_not_forgotten(tmp_path):
    """A service whose leader died while its children live on (an interrupted `spark start`
    left a job running): once the pid file is found stale, the children go too, so the next
    start does not run a second copy beside them."""
    conf = settings.load({"CDCPIPE_HOME": str(tmp_path / "home")})
    leader = processes.spawn(conf, "orphan-test", ["sh", "-c", "sleep 300 & sleep 300 & wait"])
    wait_for(
        lambda: len(processes.group_members(leader)) >= 3,  # sh and its two sleeps
        10,
        lambda: f"3 members in the group of {leader}: {processes.group_members(leader)}",
        interval=0.05,
    )
    children = [p for p in processes.group_members(leader) if p != leader]
    os.kill(leader, signal.SIGKILL)
    while processes.is_alive(leader):
        time.sleep(0.05)
    assert all(processes.is_alive(c) for c in children)  # orphaned, still running

    assert processes.pid_of(conf, "orphan-test") is None
    wait_for(
        lambda: not any(processes.is_alive(c) for c in children),
        10,
        lambda: f"orphans ended; still alive: {[c for c in children if processes.is_alive(c)]} of {children}",
        interval=0.05,
    )
    assert processes.group_members(leader) == []
