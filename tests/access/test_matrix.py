"""The access matrix over HTTP with real tokens: county hospital, township, two village clinics
(of two townships), the county-wide CDC, a write-only lab system and an auditor, against every
read path. A resource outside the caller's scope is answered as if it did not exist (404), and
never shows up in a search, a count, an include, a chain, a history or an operation."""

from __future__ import annotations

import pytest

from tests.access.conftest import PATIENTS, RESIDENT_ID, SEES

READERS = sorted(SEES)  # callers with read and search scopes
ALL_OBSERVATIONS = {f"Observation/obs-{p.removeprefix('p-')}" for p in PATIENTS}


def observations_of(patients: set[str]) -> set[str]:
    return {f"Observation/obs-{p.removeprefix('p-')}" for p in patients}


def patients(ids: set[str]) -> set[str]:
    return {f"Patient/{p}" for p in ids}


@pytest.mark.parametrize("caller", READERS)
@pytest.mark.parametrize("pid", sorted(PATIENTS))
def test_read_and_vread_answer_404_outside_the_callers_organisation(as_, caller, pid):
    fhir = as_(caller)
    tag = pid.removeprefix("p-")
    expected = 200 if pid in SEES[caller] else 404
    for path in (f"Patient/{pid}", f"Patient/{pid}/_history/1", f"Observation/obs-{tag}",
                 f"Condition/cond-{tag}/_history/1", f"Patient/{pid}/_history", f"Patient/{pid}/$everything",
                 f"Patient/{pid}/$validate"):
        response = fhir.get(path)
        assert response.status_code == expected, (path, response.text)
        if expected == 404:
            assert response.json()["issue"][0]["code"] == "not-found"
            assert PATIENTS[pid][3] not in response.text


@pytest.mark.parametrize("caller", READERS)
def test_search_count_and_total_see_only_the_callers_patients(as_, caller):
    fhir = as_(caller)
    seen = SEES[caller]
    assert fhir.ids("Patient") == patients(seen)
    assert fhir.ids("Observation?code=http://loinc.org|1558-6") == observations_of(seen)
    assert fhir.bundle("Observation?_summary=count")["total"] == len(seen)
    assert fhir.bundle("Encounter?_total=accurate&_count=1")["total"] == len(seen)
    assert fhir.bundle("Patient?gender=female&_summary=count")["total"] == len(seen)
    # an identifier search finds nothing outside the scope: existence does not leak
    number = PATIENTS["p-b1"][3]
    expected = {"Patient/p-b1"} if "p-b1" in seen else set()
    assert fhir.ids(f"Patient?identifier={RESIDENT_ID}|{number}") == expected


@pytest.mark.parametrize("caller", READERS)
def test_chains_and_has_cannot_reach_hidden_resources(as_, caller):
    fhir = as_(caller)
    seen = SEES[caller]
    number = PATIENTS["p-b1"][3]
    expected = observations_of({"p-b1"} & seen)
    assert fhir.ids(f"Observation?subject:Patient.identifier={RESIDENT_ID}|{number}") == expected
    assert fhir.ids("Observation?subject:Patient.family=张") == expected
    # _has: organisations are visible to all, the patients that name them are not
    assert fhir.ids("Organization?_has:Patient:organization:family=张") == (
        {"Organization/vc-b1"} if "p-b1" in seen else set())
    assert fhir.ids("Patient?_has:Observation:subject:code=1558-6") == patients(seen)


def test_a_shared_group_does_not_reveal_its_other_members(as_, server):
    """A self-management group with members of two villages: each village sees the group (it
    holds one member) but neither the other member nor anything found through it."""
    from fhir_server.auth.identity import SYSTEM

    group = {"resourceType": "Group", "id": "smg-1", "type": "person", "actual": True,
             "member": [{"entity": {"reference": "Patient/p-a1"}}, {"entity": {"reference": "Patient/p-b1"}}]}
    server.resources.create(group, res_id="smg-1", identity=SYSTEM)
    village = as_("village")
    assert village.ids("Group") == {"Group/smg-1"}
    assert village.ids("Group?member:Patient.family=张") == set()
    assert village.ids("Group?member:Patient.family=王") == {"Group/smg-1"}
    assert village.ids("Group?_include=Group:member", mode="include") == {"Patient/p-a1"}
    assert as_("county").ids("Group?_include=Group:member", mode="include") == {"Patient/p-a1", "Patient/p-b1"}


@pytest.mark.parametrize("caller", READERS)
def test_include_and_revinclude_are_limited_to_the_scope(as_, caller):
    fhir = as_(caller)
    seen = SEES[caller]
    assert fhir.ids("Observation?_include=Observation:subject", mode="include") == patients(seen)
    assert fhir.ids("Encounter?_include=Encounter:service-provider", mode="include") == {
        f"Organization/{PATIENTS[p][0]}" for p in seen}
    revincluded = fhir.ids("Patient?_revinclude=Observation:subject&_revinclude=Condition:subject", mode="include")
    assert revincluded == observations_of(seen) | {f"Condition/cond-{p.removeprefix('p-')}" for p in seen}
    # iterate from a visible organisation down to patients: still only the caller's
    found = fhir.ids("Organization?_id=vc-b1&_revinclude=Patient:organization", mode="include")
    assert found == ({"Patient/p-b1"} if "p-b1" in seen else set())


@pytest.mark.parametrize("caller", READERS)
def test_history_at_every_level_lists_only_visible_versions(as_, caller):
    fhir = as_(caller)
    seen = SEES[caller]
    assert fhir.ids("Observation/_history") == observations_of(seen)
    assert fhir.bundle("Observation/_history")["total"] == len(seen)
    system = fhir.ids("_history?_count=500")
    assert {i for i in system if i.startswith("Patient/")} == patients(seen)
    assert {i for i in system if i.startswith("Organization/")} == {
        f"Organization/{o}" for o in ("bureau", "hospital", "lab", "cdc", "th-a", "th-b", "vc-a1", "vc-a2", "vc-b1")}


def test_everything_and_lastn_stay_inside_the_scope(as_):
    village = as_("village")
    everything = village.ids("Patient/p-a1/$everything")
    assert {"Patient/p-a1", "Observation/obs-a1", "Condition/cond-a1", "Encounter/enc-a1",
            "Organization/vc-a1"} <= everything
    assert not {i for i in everything if i.endswith(("-a2", "-b1"))}
    assert village.get("Patient/p-b1/$everything").status_code == 404
    assert village.ids("Observation/$lastn?code=http://loinc.org|1558-6") == {"Observation/obs-a1"}
    assert village.ids("Observation/$lastn?_include=Observation:subject", mode="include") == {"Patient/p-a1"}
    assert as_("township").ids("Observation/$lastn") == observations_of({"p-a1", "p-a2"})
    assert as_("other_village").ids("Observation/$lastn?patient=Patient/p-a1") == set()


def test_meta_shows_only_what_the_caller_sees(as_, server):
    from fhir_server.auth.identity import SYSTEM

    tagged = {**server.resources.read("Observation", "obs-b1", identity=SYSTEM), "meta": {"tag": [{"code": "b1-only"}]}}
    server.resources.update("Observation", "obs-b1", tagged, identity=SYSTEM)

    def tags(fhir, path):
        meta = fhir.bundle(path)["parameter"][0]["valueMeta"]
        return {c["code"] for c in meta.get("tag", [])}

    assert tags(as_("village"), "Observation/$meta") == set()
    assert tags(as_("other_village"), "$meta") == {"b1-only"}
    assert as_("village").get("Observation/obs-b1/$meta").status_code == 404
    assert as_("village").post("Observation/obs-b1/$meta-add", json={
        "resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {"tag": [{"code": "x"}]}}],
    }).status_code == 404


def test_cdc_is_county_wide_through_its_extension_and_the_bureau_through_the_tree(as_):
    assert as_("cdc").ids("Patient") == patients(set(PATIENTS))
    assert as_("cdc").post("Patient", json={"resourceType": "Patient"}).status_code == 403  # read-only scopes
