"""Patient identity across facilities: resident ID wherever it is sent, then MRN; merges followed."""

from __future__ import annotations

import json

from adapters.hl7v2.context import MappingContext
from adapters.hl7v2.contract import Header
from adapters.hl7v2.patient_identity import RESIDENT_ID, find_patient, patient_identifiers, ranked
from adapters.hl7v2.parsing import Segment
from adapters.hl7v2.translate import translate
from fhir_server.auth.identity import SYSTEM
from fhir_server.operations.bundle import run_transaction
from fhir_server.settings import PROJECT_ROOT

RID = "430530197201219824"


def context(app: str = "HIS", facility: str = "县人民医院", server=None) -> MappingContext:
    header = Header(app, facility, "FHIR", "CHN", "ADT^A04", "1", "P", "2.4", "utf-8", None, None, None)
    return MappingContext(header, server, organization={"reference": "urn:uuid:org"})


def pid(*fields: str) -> Segment:
    """A PID from raw field texts (PID-1 onward), split like the parsers split."""
    parsed = [[[["PID"]]]]
    for text in fields:
        parsed.append([[comp.split("&") for comp in rep.split("^")] for rep in text.split("~")])
    return Segment("PID", parsed)


def test_resident_id_in_pid3_by_each_type_code():
    for id_type in ("NNCHN", "NN", "NI", "RI", "ID", "身份证"):
        found = patient_identifiers(pid("1", "", f"{RID}^^^^{id_type}"), 3, context(), "")
        assert found and found[0]["system"] == RESIDENT_ID and found[0]["value"] == RID, id_type


def test_mrn_system_from_assigning_authority_oid_namespace_or_sender():
    ctx = context()
    oid, namespace, bare = (patient_identifiers(pid("1", "", value), 3, ctx, "")[0] for value in (
        "M1^^^&1.2.156.112604.1&ISO^MR", "M1^^^XRMYY^MR", "M1^^^^MR"))
    assert oid["system"] == "urn:oid:1.2.156.112604.1"
    assert namespace["system"].endswith("/XRMYY/mrn")
    assert bare["system"].endswith("/12430530491141704B/mrn")  # the sender's institution code
    assert bare["assigner"] == {"reference": "urn:uuid:org"}
    assert bare["type"]["coding"][0]["code"] == "MR"


def test_unknown_identifier_type_is_reported_not_guessed():
    ctx = context()
    assert patient_identifiers(pid("1", "", "X1^^^^XX"), 3, ctx, "") is None
    assert [(p.segment, p.field, p.code, p.severity) for p in ctx.problems] == [("PID", 3, "103", "W")]


def test_ranking_puts_the_resident_id_first():
    ctx = context()
    found = patient_identifiers(pid("1", "", f"M1^^^^MR~{RID}^^^^NNCHN"), 3, ctx, "")
    assert [i["system"] for i in ranked(found)][0] == RESIDENT_ID


def _adt(pid_text: str, control: str, app: str = "HIS", facility: str = "县人民医院") -> bytes:
    return (f"MSH|^~\\&|{app}|{facility}|FHIR|CHN|20260512||ADT^A08|{control}|P|2.4\r{pid_text}\r").encode()


def test_a_message_from_another_facility_finds_the_patient_by_resident_id(server):
    first = translate(_adt(f"PID|1||MZ1^^^^MR~{RID}^^^^NNCHN||王^秀英||19720121|2", "1"), server)
    run_transaction(server, first.bundle, identity=SYSTEM)
    township = translate(_adt(f"PID|1||T9^^^^PI||王^秀英||19720121|2|||||||||||{RID}", "2",
                              app="THIS", facility="城关镇卫生院"), server)
    [entry] = [e for e in township.bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert entry["request"]["method"] == "PUT"  # an update of the stored patient, not a new one
    match = find_patient(server, [{"system": RESIDENT_ID, "value": RID}])
    assert entry["request"]["url"] == f"Patient/{match.id}"


def test_the_demo_patient_is_updated_and_keeps_what_hl7_does_not_carry(server):
    example = json.loads((PROJECT_ROOT / "profiles/local/examples/county-patient-valid.json").read_text("utf-8"))
    example["id"] = "pat-demo"
    run_transaction(server, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": example, "request": {"method": "PUT", "url": "Patient/pat-demo"}}]}, identity=SYSTEM)
    translation = translate(_adt(f"PID|1||MZ77^^^^MR~{RID}^^^^NNCHN||胡^艳华||19720121|2|||||13511112222", "3"),
                            server)
    run_transaction(server, translation.bundle, identity=SYSTEM)
    patient = server.resources.read("Patient", "pat-demo", identity=SYSTEM)
    assert patient["managingOrganization"] == {"reference": "Organization/org-vc-04-08"}
    assert patient["address"][0]["extension"][0]["valueCoding"]["code"] == "430530104108"
    assert {i["value"] for i in patient["identifier"]} >= {RID, "43053010410800001", "ZY2026000123", "MZ77"}
    assert patient["telecom"] == [{"system": "phone", "value": "13511112222"}]
    assert "county-patient" in patient["meta"]["profile"][0]


def test_two_different_resident_ids_in_one_pid_are_an_error(server):
    translation = translate(_adt(f"PID|1||M1^^^^MR~{RID}^^^^NNCHN||王^秀英||19720121|2|||||||||||11010519491231002X",
                                 "4"), server)
    assert translation.status == "AE"
    assert [(p.segment, p.field, p.code) for p in translation.problems if p.severity == "E"] == [("PID", 3, "205")]


def test_mrn_match_with_another_resident_id_is_not_merged(server):
    first = translate(_adt(f"PID|1||MZ1^^^^MR~{RID}^^^^NNCHN||王^秀英||19720121|2", "5"), server)
    run_transaction(server, first.bundle, identity=SYSTEM)
    other = translate(_adt("PID|1||MZ1^^^^MR~11010519491231002X^^^^NNCHN||李^建国||19491231|1", "6"), server)
    assert other.status == "AE"
    assert other.bundle is None
    assert next(p for p in other.problems if p.severity == "E").code == "205"
