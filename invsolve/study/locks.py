"""Case locks: concurrent runs of one study on one folder compute each case once.

Before it computes a case, a process creates ``cases/<id>.lock`` with ``O_CREAT | O_EXCL`` (atomic on a local or
NFSv3+ file system) holding its host, pid and start time, and removes it when the case is saved (or fails). A
process that finds a case locked leaves it to its owner and comes back to it at the end: by then the case is done
(its record exists), or its lock is free again (the owner failed on it) or stale (the owner died: same host and
the pid is gone, or another host and older than :data:`STALE_AFTER_SECONDS`), and the case is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

#: A lock of another host older than this is taken over (a case takes minutes, not hours, at the sizes here).
STALE_AFTER_SECONDS = 6 * 3600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(path: Path) -> bool:
    """Whether the owner of the lock at ``path`` is gone (an unreadable lock counts as stale)."""
    try:
        owner = json.loads(path.read_text())
        host, pid, since = owner["host"], int(owner["pid"]), float(owner["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return True
    if host == socket.gethostname():
        return not _alive(pid)
    return time.time() - since > STALE_AFTER_SECONDS


def try_lock(path: Path) -> bool:
    """Take the lock at ``path``; a stale lock is taken over. False when another live process holds it."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not is_stale(path):
                return False
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}, f)
        return True
    return False


def unlock(path: Path) -> None:
    path.unlink(missing_ok=True)
