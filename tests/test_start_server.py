"""The server a long-running process starts: warmed up, its start-up objects frozen."""

from __future__ import annotations

import gc

from fhir_server.search import units


def test_warm_up_builds_the_write_checks_without_storing_anything(server, monkeypatch):
    monkeypatch.setattr(units, "_ucum_instance", None)
    with server.db.read() as conn:
        before = server.store.count_live(conn)
    server.warm_up()
    with server.db.read() as conn:
        assert server.store.count_live(conn) == before
    assert units._ucum_instance is not None  # the UCUM registry a blood pressure needs


def test_start_server_freezes_what_start_up_built(settings):
    from fhir_server.server import start_server

    gc.unfreeze()
    started = start_server(settings)
    try:
        assert gc.get_freeze_count() > 100_000
    finally:
        started.close()
        gc.unfreeze()
