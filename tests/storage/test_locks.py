"""Named locks across threads and processes (``Database.exclusive``), on the suite's database:
a lock file per name on SQLite, a session advisory lock on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import threading
import time

from fhir_server.storage.engine import Database
from fhir_server.storage.locks import lock_key

WAIT = 0.3  # long enough for a holder that is not blocked to get in


def _take(db: Database, name: str, log: list, label: str, started: threading.Event | None = None) -> threading.Thread:
    def run() -> None:
        if started is not None:
            started.set()
        with db.exclusive(name):
            log.append(label)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_held_name_makes_other_threads_wait_and_other_names_do_not(server):
    db, log = server.db, []
    with db.exclusive("hl7v2 sender LIS|县人民医院"):
        waiting = _take(db, "hl7v2 sender LIS|县人民医院", log, "same name")
        other = _take(db, "hl7v2 sender LIS|凤桥镇卫生院", log, "other name")
        other.join(10)
        time.sleep(WAIT)
        assert log == ["other name"]  # the same name waits for the holder
    waiting.join(10)
    assert log == ["other name", "same name"]


def _hold_in_child(url: str, name: str, held, release) -> None:
    db = Database(url)
    with db.exclusive(name):
        held.set()
        release.wait(30)
    db.dispose()


def test_a_name_held_by_another_process_waits_for_it(server, settings):
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    child = context.Process(target=_hold_in_child, args=(settings.database_url, "hl7v2 sender LIS|A", held, release))
    child.start()
    try:
        assert held.wait(60)
        log: list[str] = []
        waiting = _take(server.db, "hl7v2 sender LIS|A", log, "after the child")
        time.sleep(WAIT)
        assert log == []
        release.set()
        waiting.join(30)
        assert log == ["after the child"]
    finally:
        release.set()
        child.join(30)
    assert child.exitcode == 0


def test_a_lock_is_given_up_when_its_block_fails(server):
    try:
        with server.db.exclusive("failing"):
            raise RuntimeError("the work failed")
    except RuntimeError:
        pass
    log: list[str] = []
    _take(server.db, "failing", log, "next").join(10)
    assert log == ["next"]


def test_lock_keys_are_stable_signed_64_bit_numbers():
    assert lock_key("hl7v2 sender LIS|县人民医院") == lock_key("hl7v2 sender LIS|县人民医院")
    assert lock_key("a") != lock_key("b")
    assert all(-2 ** 63 <= lock_key(n) < 2 ** 63 for n in ("a", "b", "县", ""))
