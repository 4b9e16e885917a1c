"""The listening socket of ``serve --workers N``: each new connection goes to a worker with the
fewest open connections.

Worker processes share one listening socket, and a connection stays with the worker that
accepted it. The kernel wakes them all and the quickest accepts, so a few long-lived
connections (a hospital system keeps its own open for hours; a benchmark opens four at once)
often land three on one worker and one on the other: one process then does most of the work
while the other idles. Here a worker that holds more connections than another lets a new one
wait, for at most ``YIELD_SECONDS``, for a less busy worker to take it.

The socket is a ``socket.socket`` whose ``accept`` asyncio's event loop calls as usual (so the
workers run the asyncio loop: uvloop would accept in C, past this); it travels to the spawned
workers with the counts they share (``__reduce__``), each worker taking a slot of its own.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from multiprocessing.reduction import DupFd

__all__ = ["BalancedListener", "YIELD_SECONDS"]

YIELD_SECONDS = 0.05  # how long a busier worker leaves a new connection to the others
# While it waits, the listening socket stays readable and the loop asks again at once: a short
# sleep per refusal leaves the CPU to the worker that should accept.
_PAUSE_SECONDS = 0.0005
_EPISODE = 0.2  # a refusal older than this belonged to an earlier connection


class BalancedListener(socket.socket):
    """A listening socket whose ``accept`` leaves a new connection to a less busy worker."""

    @classmethod
    def for_workers(cls, host: str, port: int, workers: int) -> BalancedListener:
        """A TCP socket bound to ``host:port`` for ``workers`` spawned processes (``IPPROTO_TCP``,
        so that asyncio sets TCP_NODELAY on what it accepts)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = cls(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.set_inheritable(True)
        spawn = multiprocessing.get_context("spawn")  # what the workers are started with
        listener._share(spawn.RawArray("i", workers), spawn.RawArray("i", workers), spawn.Lock())
        return listener

    def _share(self, counts, pids, lock) -> None:
        self._counts, self._pids, self._lock = counts, pids, lock
        self._slot: int | None = None
        self._refused_since: float | None = None

    def __reduce__(self):
        """Sent to a spawned worker (only while multiprocessing starts one)."""
        return _rebuild, (DupFd(self.fileno()), self.family, self.type, self.proto,
                          self._counts, self._pids, self._lock)

    # ---- in a worker ---------------------------------------------------------------------
    def accept(self):
        slot = self._claim_slot()
        if self._leave_to_others(slot, self._counts[slot]):
            time.sleep(_PAUSE_SECONDS)
            raise BlockingIOError("a worker with fewer connections takes this one")
        fd, address = self._accept()
        conn = _Counted(self.family, self.type, self.proto, fileno=fd)
        if socket.getdefaulttimeout() is None and self.gettimeout():
            conn.setblocking(True)  # as socket.accept does
        self._refused_since = None  # the next connection gets its own wait
        self._counts[slot] += 1  # only this process writes its slot, from its event loop
        conn.counted_in(self._counts, slot)
        return conn, address

    def _leave_to_others(self, slot: int, mine: int) -> bool:
        others = [self._counts[i] for i, pid in enumerate(self._pids) if i != slot and pid and _alive(pid)]
        if not others or mine <= min(others):
            self._refused_since = None
            return False
        now = time.monotonic()
        if self._refused_since is None or now - self._refused_since > _EPISODE:
            self._refused_since = now
        return now - self._refused_since < YIELD_SECONDS

    def _claim_slot(self) -> int:
        if self._slot is None:
            with self._lock:
                mine = os.getpid()
                free = next((i for i, pid in enumerate(self._pids) if pid in (0, mine) or not _alive(pid)), None)
                if free is None:  # more workers than slots (a restart overlapping): share the last
                    free = len(self._pids) - 1
                self._pids[free], self._counts[free] = mine, 0
                self._slot = free
        return self._slot


class _Counted(socket.socket):
    """An accepted connection that leaves its worker's count when it is closed (by its transport)."""

    def counted_in(self, counts, slot: int) -> None:
        self._counted = (counts, slot)

    def close(self) -> None:
        counted, self._counted = getattr(self, "_counted", None), None
        super().close()
        if counted is not None:
            counts, slot = counted
            counts[slot] -= 1


def _rebuild(fd: DupFd, family: int, kind: int, proto: int, counts, pids, lock) -> BalancedListener:
    """In a worker: the listener, its slot claimed at once, so that the other workers count this
    one (with its connections) from the start rather than from its first accept."""
    listener = BalancedListener(family, kind, proto, fileno=fd.detach())
    listener._share(counts, pids, lock)
    listener._claim_slot()
    return listener


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
