"""The guide under /guide: an index and one page per profile, generated from the definitions."""

from __future__ import annotations

import json
from pathlib import Path

LOCAL = Path(__file__).resolve().parents[2] / "profiles" / "local"


def test_index_links_every_profile_and_extension(client):
    response = client.get("/guide/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for path in LOCAL.glob("StructureDefinition-*.json"):
        definition = json.loads(path.read_text(encoding="utf-8"))
        assert f'href="{definition["id"]}.html"' in response.text


def test_profile_page_shows_elements_cardinality_bindings_invariants_and_examples(client):
    page = client.get("/guide/county-patient.html")
    assert page.status_code == 200
    text = page.text
    assert "Patient.identifier<span class=\"slice\">:residentId</span>" in text
    assert "cn-id-1" in text and "GB 11643" in text
    assert "county-patient-valid.json" in text
    assert "county-patient-invalid-check-digit.json" in text and "Patient.identifier[0].value" in text
    follow_up = client.get("/guide/county-follow-up-encounter.html").text
    assert "binding (extensible)" in follow_up and "1..1" in follow_up


def test_guide_needs_no_token_and_unknown_pages_are_404(app):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://testserver") as anonymous:
        assert anonymous.get("/guide/index.html").status_code == 200
        missing = anonymous.get("/guide/no-such-profile.html")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
