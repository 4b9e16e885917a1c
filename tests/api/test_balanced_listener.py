"""The listening socket of ``serve --workers N`` (``fhir_server/api/balanced_listener.py``): a
worker holding more connections than another leaves a new one to it, for a moment."""

from __future__ import annotations

import os
import socket
import time

import pytest

from fhir_server.api.balanced_listener import YIELD_SECONDS, BalancedListener, _rebuild


@pytest.fixture
def listener():
    sock = BalancedListener.for_workers("127.0.0.1", 0, 2)
    sock.listen(8)
    sock.settimeout(5)
    sock._pids[1] = os.getppid()  # a sibling worker, alive
    yield sock
    sock.close()


def _connect(sock: BalancedListener) -> socket.socket:
    return socket.create_connection(sock.getsockname(), timeout=5)


def test_a_worker_with_more_connections_leaves_a_new_one_to_another(listener):
    clients = [_connect(listener)]
    first, _ = listener.accept()  # 0 here, 0 there: taken
    assert listener._pids[0] == os.getpid() and listener._counts[0] == 1
    clients.append(_connect(listener))
    with pytest.raises(BlockingIOError):
        listener.accept()  # 1 here, 0 there: the other worker's turn
    time.sleep(YIELD_SECONDS * 1.5)
    second, _ = listener.accept()  # nobody took it in time: taken after all
    assert listener._counts[0] == 2
    clients.append(_connect(listener))
    with pytest.raises(BlockingIOError):
        listener.accept()  # a new connection waits again, however soon after the last
    listener._counts[1] = 5  # the other worker is busier now
    third, _ = listener.accept()
    for s in (*clients, first, second, third):
        s.close()


def test_closed_connections_stop_counting(listener):
    client = _connect(listener)
    accepted, _ = listener.accept()
    assert listener._counts[0] == 1
    accepted.close()  # as its transport closes it: the count goes down at once
    accepted.close()  # (once)
    assert listener._counts[0] == 0
    client.close()
    other = _connect(listener)
    again, _ = listener.accept()  # 0 open here again: no waiting
    assert listener._counts[0] == 1
    for s in (other, again):
        s.close()


def test_a_dead_sibling_is_not_waited_for(listener):
    listener._pids[1] = 2 ** 22 + 1  # no such process
    clients = [_connect(listener), _connect(listener)]
    accepted = [listener.accept()[0], listener.accept()[0]]
    for s in (*clients, *accepted):
        s.close()


def test_a_worker_is_counted_from_the_moment_the_listener_reaches_it(listener):
    """Before its first accept, a worker already holds a slot: the others leave it new connections
    (a worker that took four at once before its sibling woke was the bug)."""

    class SentFd:  # what multiprocessing's DupFd gives a spawned worker
        def detach(self) -> int:
            return os.dup(listener.fileno())

    listener._pids[1] = 0
    worker = _rebuild(SentFd(), listener.family, listener.type, listener.proto,
                      listener._counts, listener._pids, listener._lock)
    try:
        assert listener._pids[worker._slot] == os.getpid() and listener._counts[worker._slot] == 0
    finally:
        worker.close()
