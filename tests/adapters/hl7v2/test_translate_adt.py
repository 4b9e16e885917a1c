"""ADT^A01/A04/A08/A28/A31 -> Patient (+ Encounter), A40 merge: stored and read back."""

from __future__ import annotations

import pytest

from adapters.hl7v2.translate import translate
from fhir_server.auth.identity import SYSTEM
from fhir_server.errors import FhirError
from fhir_server.operations.bundle import run_transaction

RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"
COUNTY_PATIENT = "https://county-fhir.example.org/fhir/StructureDefinition/county-patient"


def adt(event: str, *segments: str, control: str = "ADT0001", app: str = "HIS", facility: str = "县人民医院") -> bytes:
    msh = f"MSH|^~\\&|{app}|{facility}|FHIR|CHN|20260512101500||ADT^{event}^ADT_A01|{control}|P|2.4"
    return ("\r".join([msh, *segments]) + "\r").encode("utf-8")


def write(server, raw: bytes) -> list[dict]:
    translation = translate(raw, server)
    assert translation.status == "AA", translation.problems
    return run_transaction(server, translation.bundle, identity=SYSTEM)


def patients(server, system: str, value: str) -> list[dict]:
    with server.db.read() as conn:
        ids = server.search.find_ids(conn, "Patient", [("identifier", f"{system}|{value}")], SYSTEM)
    return [server.resources.read("Patient", i, identity=SYSTEM) for i in ids]


PID_WANG = "PID|1||MZ0001^^^^MR~430530197201219824^^^^NNCHN||王^秀英||19720121|2|||柳冲镇上垅村6组42号^^邵阳市^湖南省^^CN^H^^青山县"


@pytest.mark.parametrize("event", ["A01", "A04", "A08", "A28", "A31"])
def test_each_adt_event_creates_the_patient(server, event):
    write(server, adt(event, PID_WANG, "PV1|1|N"))
    [patient] = patients(server, RESIDENT_ID, "430530197201219824")
    assert patient["name"][0] == {"use": "official", "text": "王秀英", "family": "王", "given": ["秀英"]}
    assert patient["gender"] == "female"  # GB/T 2261.1 digit 2
    assert patient["birthDate"] == "1972-01-21"
    assert patient["address"][0]["district"] == "青山县"
    assert patient["active"] is True
    assert patient["meta"]["profile"] == [COUNTY_PATIENT]
    mrn = next(i for i in patient["identifier"] if i["value"] == "MZ0001")
    assert mrn["type"]["coding"][0]["code"] == "MR"
    assert mrn["assigner"]["reference"].startswith("Organization/")
    organization = server.resources.read("Organization", mrn["assigner"]["reference"].split("/")[1], identity=SYSTEM)
    assert organization["name"] == "青山县人民医院"
    assert patient["managingOrganization"] == mrn["assigner"]


def test_a01_writes_the_inpatient_encounter_and_a08_updates_it(server):
    fields = [""] * 46
    fields[1:3] = ["1", "I"]  # PV1-2 patient class: inpatient
    fields[3] = "内分泌科^301^2"
    fields[7] = "D001^张^伟"  # attending doctor
    fields[19] = "ZY2026000123"  # visit number
    fields[44] = "20260510090000"  # admitted
    write(server, adt("A01", PID_WANG, "PV1|" + "|".join(fields[1:45])))
    fields[45] = "20260520100000"  # discharged
    write(server, adt("A08", PID_WANG, "PV1|" + "|".join(fields[1:46]), control="ADT0002"))
    [patient] = patients(server, RESIDENT_ID, "430530197201219824")
    with server.db.read() as conn:
        encounter_ids = server.search.find_ids(conn, "Encounter", [("subject", f"Patient/{patient['id']}")], SYSTEM)
    assert len(encounter_ids) == 1
    encounter = server.resources.read("Encounter", encounter_ids[0], identity=SYSTEM)
    assert encounter["class"]["code"] == "IMP"
    assert encounter["identifier"][0]["value"] == "ZY2026000123"
    assert encounter["period"] == {"start": "2026-05-10T09:00:00+08:00", "end": "2026-05-20T10:00:00+08:00"}
    assert encounter["status"] == "finished"
    assert encounter["participant"][0]["individual"]["display"] == "张伟"
    assert encounter["meta"]["versionId"] == "2"


def test_a08_updates_demographics_and_keeps_other_identifiers(server):
    write(server, adt("A04", PID_WANG))
    # a township HIS knows her by its own number and her resident ID in PID-19
    township = "PID|1||T0099^^^^PI||王^秀英||1972-01-21|F||||||13900002222|||||430530197201219824"
    write(server, adt("A08", township, app="THIS", facility="城关镇卫生院", control="T1"))
    [patient] = patients(server, RESIDENT_ID, "430530197201219824")
    values = {i["value"] for i in patient["identifier"]}
    assert values == {"MZ0001", "430530197201219824", "T0099"}
    assert patient["telecom"] == [{"system": "phone", "value": "13900002222"}]
    assert patient["birthDate"] == "1972-01-21"  # non-HL7 date format read
    assert patient["meta"]["versionId"] == "2"


def test_resident_id_in_pid_20_and_lower_case_x(server):
    write(server, adt("A28", "PID|1||M77^^^^MR||李^建国||19490101|1||||||||||||11010519491231002x"))
    [patient] = patients(server, RESIDENT_ID, "11010519491231002X")
    assert patient["gender"] == "male"


def test_invalid_check_digit_is_not_used_and_reported(server):
    translation = translate(adt("A04", "PID|1||M1^^^^MR~430530197201219825^^^^NNCHN||王^秀英||19720121|2"), server)
    assert translation.status == "AA"
    problem = next(p for p in translation.problems if p.code == "102")
    assert (problem.segment, problem.field, problem.severity) == ("PID", 3, "W")
    run_transaction(server, translation.bundle, identity=SYSTEM)
    assert patients(server, RESIDENT_ID, "430530197201219825") == []


def test_same_name_and_birth_date_are_never_merged(server):
    write(server, adt("A04", "PID|1||M1^^^^MR||王^秀英||19720121|2"))
    write(server, adt("A04", "PID|1||M2^^^^MR||王^秀英||19720121|2", control="ADT0002"))
    with server.db.read() as conn:
        assert len(server.search.find_ids(conn, "Patient", [("name", "王秀英")], SYSTEM)) == 2


def test_mrn_matches_when_no_resident_id_is_sent(server):
    write(server, adt("A04", PID_WANG))
    translation = translate(adt("A08", "PID|1||MZ0001^^^^MR||王^秀英||19720121|2|||||13700003333", control="X2"), server)
    entries = run_transaction(server, translation.bundle, identity=SYSTEM)
    patient_entries = [e for e in entries if e["resource"]["resourceType"] == "Patient"]
    [patient] = patients(server, RESIDENT_ID, "430530197201219824")
    assert patient_entries[0]["resource"]["id"] == patient["id"]
    assert patient["telecom"][0]["value"] == "13700003333"


def test_a40_merge_links_both_records_and_later_messages_land_on_the_survivor(server):
    write(server, adt("A04", "PID|1||OLD001^^^^MR||王^秀英||19720121|2"))
    write(server, adt("A04", PID_WANG, control="ADT0002"))
    merge = adt("A40", PID_WANG, "MRG|OLD001^^^^MR", control="ADT0003")
    write(server, merge)
    [survivor] = patients(server, RESIDENT_ID, "430530197201219824")
    [old] = [p for p in patients(server, "https://county-fhir.example.org/fhir/sid/hl7v2/12430530491141704B/mrn",
                                 "OLD001")]
    assert old["active"] is False
    assert old["link"] == [{"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}]
    assert survivor["link"] == [{"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"}]
    # an ORU naming only the old MRN files its result under the survivor
    oru = ("MSH|^~\\&|HIS|县人民医院|FHIR|CHN|20260513||ORU^R01|R1|P|2.5\r"
           "PID|1||OLD001^^^^MR||王^秀英||19720121|2\r"
           "OBR|1||F1|GLU^空腹血糖^L|||20260513080000\r"
           "OBX|1|NM|GLU^空腹血糖^L||6.1|mmol/L|||||F\r").encode()
    translation = translate(oru, server)
    entries = run_transaction(server, translation.bundle, identity=SYSTEM)
    observation = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Observation")
    assert observation["subject"] == {"reference": f"Patient/{survivor['id']}"}
    # the same A40 again changes nothing more
    again = translate(merge.replace(b"ADT0003", b"ADT0004"), server)
    assert any(p.code == "205" for p in again.problems)


def test_a40_points_the_merged_patients_resources_at_the_survivor(server):
    """Encounters and results filed under the prior record follow it into the survivor; the
    records' own links and the Provenance of what was written keep naming the prior record."""
    write(server, adt("A01", "PID|1||OLD002^^^^MR||王^秀英||19720121|2", "PV1|1|I|||||||||||||||||V77", control="A1"))
    oru = ("MSH|^~\\&|HIS|县人民医院|FHIR|CHN|20260513||ORU^R01|R2|P|2.5\r"
           "PID|1||OLD002^^^^MR||王^秀英||19720121|2\r"
           "OBR|1||F2|GLU^空腹血糖^L|||20260513080000\r"
           "OBX|1|NM|GLU^空腹血糖^L||6.1|mmol/L|||||F\r").encode()
    write(server, oru)
    [old] = [p for p in patients(server, "https://county-fhir.example.org/fhir/sid/hl7v2/12430530491141704B/mrn",
                                 "OLD002")]
    before = {(r["resourceType"], r["id"]): r for r in _referring(server, old["id"])}
    assert {t for t, _ in before} >= {"Encounter", "Observation", "DiagnosticReport"}

    translation = translate(adt("A40", PID_WANG, "MRG|OLD002^^^^MR", control="A2"), server)
    assert translation.status == "AA", translation.problems
    repointed = [e for e in translation.bundle["entry"] if e["request"].get("ifMatch")]
    assert {tuple(e["request"]["url"].split("/")) for e in repointed} == {
        key for key in before if key[0] not in ("Patient", "Provenance")}
    run_transaction(server, translation.bundle, identity=SYSTEM)

    [survivor] = patients(server, RESIDENT_ID, "430530197201219824")
    after = {(r["resourceType"], r["id"]) for r in _referring(server, old["id"])}
    assert {t for t, _ in after} <= {"Patient"}  # only the survivor's "replaces" link
    for (rtype, rid), earlier in before.items():
        now = server.resources.read(rtype, rid, identity=SYSTEM)
        if rtype == "Patient":
            continue
        assert now["subject"] == {"reference": f"Patient/{survivor['id']}"}
        assert int(now["meta"]["versionId"]) == int(earlier["meta"]["versionId"]) + 1


def test_a40_fails_cleanly_when_a_resource_changed_after_it_was_read(server):
    write(server, adt("A01", "PID|1||OLD003^^^^MR||王^秀英||19720121|2", "PV1|1|I|||||||||||||||||V78", control="B1"))
    translation = translate(adt("A40", PID_WANG, "MRG|OLD003^^^^MR", control="B2"), server)
    [entry] = [e for e in translation.bundle["entry"] if e["request"].get("ifMatch")]
    encounter = server.resources.read(*entry["request"]["url"].split("/"), identity=SYSTEM)
    server.resources.update("Encounter", encounter["id"], {**encounter, "status": "finished"}, identity=SYSTEM)
    with pytest.raises(FhirError) as refused:
        run_transaction(server, translation.bundle, identity=SYSTEM)
    assert refused.value.status == 412
    assert patients(server, RESIDENT_ID, "430530197201219824") == []  # nothing of the merge was written


def _referring(server, patient_id: str) -> list[dict]:
    return [s.json() for s in server.resources.referring("Patient", patient_id, identity=SYSTEM)]


def test_a40_without_mrg_is_an_error(server):
    translation = translate(adt("A40", PID_WANG), server)
    assert translation.status == "AE"
    assert translation.bundle is None
    assert translation.problems[-1].segment == "MRG"


def test_a40_into_a_survivor_not_yet_stored_creates_it_with_the_link(server):
    write(server, adt("A04", "PID|1||OLD9^^^^MR||王^秀英||19720121|2"))
    write(server, adt("A40", PID_WANG, "MRG|OLD9^^^^MR", control="M9"))
    [survivor] = patients(server, RESIDENT_ID, "430530197201219824")
    assert survivor["link"][0]["type"] == "replaces"
    old = server.resources.read("Patient", survivor["link"][0]["other"]["reference"].split("/")[1], identity=SYSTEM)
    assert old["active"] is False
    assert old["link"] == [{"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}]


def test_a40_naming_an_unknown_prior_patient_updates_the_survivor_with_a_warning(server):
    translation = translate(adt("A40", PID_WANG, "MRG|NOBODY^^^^MR", control="M10"), server)
    assert translation.status == "AA"
    assert any(p.segment == "MRG" and p.code == "204" and p.severity == "W" for p in translation.problems)
    run_transaction(server, translation.bundle, identity=SYSTEM)
    [survivor] = patients(server, RESIDENT_ID, "430530197201219824")
    assert "link" not in survivor
