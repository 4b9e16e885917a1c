"""The server a long-running process starts: warmed up, its start-up objects frozen."""

from __future__ import annotations

import gc
import json


def test_warm_up_checks_every_county_example_without_storing_anything(server, monkeypatch):
    checked: list[str] = []
    prepare = server.resources.prepare

    def counting(resource, res_type=None):
        checked.append(resource["resourceType"])
        return prepare(resource, res_type)

    monkeypatch.setattr(server.resources, "prepare", counting)
    with server.db.read() as conn:
        before = server.store.count_live(conn)
    server.warm_up()
    with server.db.read() as conn:
        assert server.store.count_live(conn) == before
    examples = [json.loads(p.read_text(encoding="utf-8"))
                for p in (server.settings.local_profiles_dir / "examples").glob("*-valid.json")]
    assert sorted(checked) == sorted(e["resourceType"] for e in examples if e.get("resourceType") != "Extension")
    assert {"Patient", "Observation", "Encounter"} <= set(checked)


def test_start_server_freezes_what_start_up_built(settings):
    from fhir_server.server import start_server

    gc.unfreeze()
    started = start_server(settings)
    try:
        assert gc.get_freeze_count() > 100_000
    finally:
        started.close()
        gc.unfreeze()
