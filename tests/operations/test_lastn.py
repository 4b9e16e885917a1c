"""Observation/$lastn: the newest observations per (subject, code), in SQL."""

from __future__ import annotations

import pytest

LOINC = "http://loinc.org"
BP, GLUCOSE = "85354-9", "14771-0"


def _obs(fhir, patient: str, code: str, when: str | None, *, extra_coding: dict | None = None) -> str:
    codings = [{"system": LOINC, "code": code}]
    if extra_coding:
        codings.insert(0, extra_coding)  # the LOINC coding is not the first one
    body = {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": codings}, "subject": {"reference": f"Patient/{patient}"},
    }
    if when:
        body["effectiveDateTime"] = when
    return fhir.create(body)["id"]


@pytest.fixture
def data(fhir):
    pats = {name: fhir.create({"resourceType": "Patient", "name": [{"family": name}]})["id"]
            for name in ("A", "B", "C", "D")}
    obs = {}
    # A: four blood pressures (created out of date order) and two glucoses
    obs["A-bp-2"] = _obs(fhir, pats["A"], BP, "2024-02-01T08:00:00Z")
    obs["A-bp-4"] = _obs(fhir, pats["A"], BP, "2024-04-01T08:00:00Z",
                         extra_coding={"system": "http://example.org/local-codes", "code": "BP"})
    obs["A-bp-1"] = _obs(fhir, pats["A"], BP, "2024-01-01T08:00:00Z")
    obs["A-bp-3"] = _obs(fhir, pats["A"], BP, "2024-03-01T08:00:00+08:00")
    obs["A-glu-1"] = _obs(fhir, pats["A"], GLUCOSE, "2024-01-15")
    obs["A-glu-2"] = _obs(fhir, pats["A"], GLUCOSE, "2024-05-15")
    # B: two dated blood pressures and an undated one
    obs["B-bp-undated"] = _obs(fhir, pats["B"], BP, None)
    obs["B-bp-1"] = _obs(fhir, pats["B"], BP, "2023-06-01")
    obs["B-bp-2"] = _obs(fhir, pats["B"], BP, "2023-07-01")
    # C: two glucoses at the same instant (the one stored last wins the tie), one older
    obs["C-glu-old"] = _obs(fhir, pats["C"], GLUCOSE, "2022-01-01T00:00:00Z")
    obs["C-glu-tie-first"] = _obs(fhir, pats["C"], GLUCOSE, "2024-06-01T07:30:00Z")
    obs["C-glu-tie-last"] = _obs(fhir, pats["C"], GLUCOSE, "2024-06-01T07:30:00Z")
    # D: only an undated glucose
    obs["D-glu-undated"] = _obs(fhir, pats["D"], GLUCOSE, None)
    return pats, obs


def _lastn(fhir, query: str) -> list[str]:
    response = fhir.get(f"Observation/$lastn?{query}")
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "searchset"
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _names(obs: dict, ids: list[str]) -> set[str]:
    by_id = {v: k for k, v in obs.items()}
    return {by_id[i] for i in ids}


def test_lastn_max_1_is_the_newest_per_patient_and_code(fhir, data):
    _, obs = data
    got = _lastn(fhir, "_count=100")
    assert _names(obs, got) == {"A-bp-4", "A-glu-2", "B-bp-2", "C-glu-tie-last", "D-glu-undated"}
    assert len(got) == 5  # one per group, nothing twice


def test_lastn_max_3(fhir, data):
    _, obs = data
    got = _lastn(fhir, "max=3&_count=100")
    assert _names(obs, got) == {
        "A-bp-4", "A-bp-3", "A-bp-2", "A-glu-2", "A-glu-1",
        "B-bp-2", "B-bp-1", "B-bp-undated",  # the undated one ranks after the dated ones
        "C-glu-tie-last", "C-glu-tie-first", "C-glu-old", "D-glu-undated",
    }
    # within a group the newest comes first
    a_bp = [i for i in got if i in {obs["A-bp-4"], obs["A-bp-3"], obs["A-bp-2"]}]
    assert a_bp == [obs["A-bp-4"], obs["A-bp-3"], obs["A-bp-2"]]
    c = [i for i in got if i in {obs["C-glu-tie-last"], obs["C-glu-tie-first"], obs["C-glu-old"]}]
    assert c == [obs["C-glu-tie-last"], obs["C-glu-tie-first"], obs["C-glu-old"]]


def test_lastn_respects_search_filters(fhir, data):
    pats, obs = data
    assert _names(obs, _lastn(fhir, f"code={LOINC}|{BP}")) == {"A-bp-4", "B-bp-2"}
    assert _names(obs, _lastn(fhir, f"code={GLUCOSE}&max=2")) == {
        "A-glu-2", "A-glu-1", "C-glu-tie-last", "C-glu-tie-first", "D-glu-undated"}
    assert _names(obs, _lastn(fhir, f"patient=Patient/{pats['A']}")) == {"A-bp-4", "A-glu-2"}
    assert _names(obs, _lastn(fhir, f"subject=Patient/{pats['B']}&max=2")) == {"B-bp-2", "B-bp-1"}
    # a date filter applies before ranking: the newest up to March 2024
    assert _names(obs, _lastn(fhir, f"patient=Patient/{pats['A']}&code={BP}&date=le2024-03-15")) == {"A-bp-3"}
    assert _names(obs, _lastn(fhir, "category=vital-signs&patient=Patient/" + pats["D"])) == {"D-glu-undated"}


def test_lastn_post_with_parameters(fhir, data):
    pats, obs = data
    response = fhir.post("Observation/$lastn", json={"resourceType": "Parameters", "parameter": [
        {"name": "max", "valueInteger": 2},
        {"name": "patient", "valueString": f"Patient/{pats['A']}"},
        {"name": "code", "valueString": BP},
    ]})
    assert response.status_code == 200, response.text
    ids = [e["resource"]["id"] for e in response.json()["entry"]]
    assert ids == [obs["A-bp-4"], obs["A-bp-3"]]


def test_lastn_pages_and_includes(fhir, data):
    pats, _ = data
    first = fhir.search("Observation/$lastn?_count=2")
    assert len(first["entry"]) == 2
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert "max=1" in nxt and "_offset=2" in nxt
    seen = [e["resource"]["id"] for e in first["entry"]]
    url = nxt.split("/fhir/", 1)[1]
    while url:
        page = fhir.search(url)
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        links = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = links[0].split("/fhir/", 1)[1] if links else None
    assert sorted(seen) == sorted(_lastn(fhir, "_count=100"))

    bundle = fhir.search(f"Observation/$lastn?patient=Patient/{pats['B']}&_include=Observation:subject")
    included = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert [(r["resourceType"], r["id"]) for r in included] == [("Patient", pats["B"])]


def test_lastn_bad_max(fhir, data):
    assert fhir.get("Observation/$lastn?max=0").status_code == 400
    assert fhir.get("Observation/$lastn?max=two").status_code == 400
