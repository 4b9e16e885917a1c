"""The synthetic county generator and the identifier rules it relies on."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import date, datetime

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_server.demo import codes
from fhir_server.demo.county import generate_county
from fhir_server.identifiers import (
    health_record_number,
    is_valid_resident_id,
    is_valid_unified_social_credit_code,
    organization_code,
    resident_id,
    resident_id_check_character,
)
from fhir_server.demo.network import CDC_ID, HOSPITAL_ID, LAB_ID
from fhir_server.demo.parameters import DEFAULT_PARAMETERS

REFERENCE_DATE = DEFAULT_PARAMETERS.reference_date
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


# -- resident ID (GB 11643) ------------------------------------------------------------

@pytest.mark.parametrize("known_good", [
    "11010519491231002X",  # the commonly cited example (Beijing Chaoyang, 1949-12-31, female)
    "440524188001010014",  # the example in GB 11643-1999 itself
])
def test_known_good_resident_ids_are_valid(known_good):
    assert is_valid_resident_id(known_good)


def test_resident_id_rebuilds_the_textbook_examples():
    assert resident_id("110105", date(1949, 12, 31), 1, "female") == "11010519491231002X"
    assert resident_id("440524", date(1880, 1, 1), 0, "male") == "440524188001010014"


@pytest.mark.parametrize("corrupted", [
    "110105194912310021",   # wrong check character
    "11010519491231003X",   # one digit changed
    "11010519491231002",    # 17 characters
    "11010519491231002XX",  # 19 characters
    "11010519491231002x",   # lower-case x is not the standard's character
    "11010519491331002X",   # month 13
    "11010519490230002X",   # 30 February
    "00010519491231002X",   # no province 00
    "11010517991231002X",   # before 1800
    "1101051949123１002X",  # a full-width digit
    "",
])
def test_corrupted_resident_ids_are_invalid(corrupted):
    assert not is_valid_resident_id(corrupted)


def test_resident_id_validator_rejects_non_strings():
    assert not is_valid_resident_id(None)
    assert not is_valid_resident_id(11010519491231002)


def test_exactly_one_check_character_fits_each_body():
    for body in ("43053019640521697", "11010519491231002", "65010120000229000"):
        valid = [c for c in "0123456789X" if is_valid_resident_id(body + c)]
        assert valid == [resident_id_check_character(body)]


def test_every_single_digit_change_is_detected():
    good = "11010519491231002X"
    for position in range(17):
        for digit in "0123456789":
            if digit != good[position]:
                changed = good[:position] + digit + good[position + 1:]
                assert not is_valid_resident_id(changed), changed


def test_seventeenth_digit_is_odd_for_men_and_even_for_women():
    for serial in (0, 1, 250, 499):
        assert int(resident_id("430530", date(1960, 5, 1), serial, "male")[16]) % 2 == 1
        assert int(resident_id("430530", date(1960, 5, 1), serial, "female")[16]) % 2 == 0


@pytest.mark.parametrize("args", [
    ("43053", date(1960, 1, 1), 1, "male"),     # region code too short
    ("43053A", date(1960, 1, 1), 1, "male"),    # not digits
    ("430530", date(1960, 1, 1), 500, "male"),  # serial out of range
    ("430530", date(1960, 1, 1), -1, "male"),
    ("430530", date(1960, 1, 1), 1, "unknown"),  # sex cannot be encoded
])
def test_resident_id_refuses_what_it_cannot_encode(args):
    with pytest.raises(ValueError):
        resident_id(*args)


# -- health-record number and institution codes ----------------------------------------

def test_health_record_number_is_county_township_village_serial():
    number = health_record_number("430530", "104", "110", 1)
    assert number == "43053010411000001"
    assert len(number) == 17 and number.isdigit()
    assert health_record_number(430530, 104, 110, 99999) == "43053010411099999"


@pytest.mark.parametrize("args", [
    ("43053", "104", "110", 1),
    ("430530", "1040", "110", 1),
    ("430530", "104", "11", 1),
    ("430530", "104", "110", 100000),
    ("430530", "10a", "110", 1),
])
def test_health_record_number_refuses_wrong_widths(args):
    with pytest.raises(ValueError):
        health_record_number(*args)


def test_institution_code_check_characters():
    assert organization_code("D2143569") == "D2143569X"  # the GB 11714 example
    assert is_valid_unified_social_credit_code("91350100M000100Y43")
    assert not is_valid_unified_social_credit_code("91350100M000100Y44")
    assert not is_valid_unified_social_credit_code("91350100M000100Y4")


# -- the generated county --------------------------------------------------------------

@pytest.fixture(scope="module")
def county_batches():
    return list(generate_county(30))


@pytest.fixture(scope="module")
def county_resources(county_batches):
    return [r for batch in county_batches for r in batch]


@pytest.fixture(scope="module")
def large_county():
    """Enough residents for prevalence, value distributions and full groups."""
    return [r for batch in generate_county(3000, seed=11) for r in batch]


def _of_type(resources, resource_type):
    return [r for r in resources if r["resourceType"] == resource_type]


def _references(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def test_same_seed_gives_identical_output_and_another_seed_does_not(county_batches):
    assert list(generate_county(30)) == county_batches
    assert list(generate_county(30, seed=2026)) == county_batches
    assert list(generate_county(30, seed=2027)) != county_batches


def test_generation_is_lazy_and_starts_with_the_network():
    batches = generate_county(10**9)
    network = next(batches)
    assert {r["resourceType"] for r in network} == {
        "Organization", "Location", "Practitioner", "PractitionerRole"}
    first_patient_batch = next(batches)
    assert first_patient_batch[0]["resourceType"] == "Patient"
    assert first_patient_batch[0]["id"] == "pat-000001"


def test_one_batch_per_patient_then_the_groups(county_batches):
    patient_batches = county_batches[1:31]
    assert all(b[0]["resourceType"] == "Patient" for b in patient_batches)
    assert all(sum(r["resourceType"] == "Patient" for r in b) == 1 for b in patient_batches)
    assert all(r["resourceType"] == "Group" for b in county_batches[31:] for r in b)


def test_network_has_one_hospital_one_cdc_ten_townships_and_a_hundred_villages(county_resources):
    orgs = {o["id"]: o for o in _of_type(county_resources, "Organization")}
    kinds = Counter(o["type"][0]["text"] for o in orgs.values())
    assert kinds["县级综合医院（县域医共体牵头医院）"] == 1
    assert kinds["县级疾病预防控制中心"] == 1
    assert kinds["乡镇卫生院"] == 10
    assert kinds["村卫生室"] == 100
    assert orgs[HOSPITAL_ID]["name"].endswith("县人民医院")
    assert orgs[CDC_ID]["name"].endswith("县疾病预防控制中心")
    assert orgs[LAB_ID]["partOf"]["reference"] == f"Organization/{HOSPITAL_ID}"
    townships = [o for o in orgs.values() if o["type"][0]["text"] == "乡镇卫生院"]
    villages = [o for o in orgs.values() if o["type"][0]["text"] == "村卫生室"]
    assert all(o["name"].endswith("镇卫生院") for o in townships)
    assert all(o["name"].endswith("村卫生室") for o in villages)
    assert len({o["name"] for o in orgs.values()}) == len(orgs)


def test_part_of_chain_runs_village_township_county(county_resources):
    orgs = {o["id"]: o for o in _of_type(county_resources, "Organization")}

    def parent(org):
        return orgs[org["partOf"]["reference"].removeprefix("Organization/")]

    villages = [o for o in orgs.values() if o["type"][0]["text"] == "村卫生室"]
    per_township = Counter()
    for village in villages:
        township = parent(village)
        assert township["type"][0]["text"] == "乡镇卫生院"
        assert parent(township)["id"] == HOSPITAL_ID
        per_township[township["id"]] += 1
    assert sorted(per_township.values()) == [10] * 10
    assert parent(orgs[CDC_ID]) is parent(orgs[HOSPITAL_ID])  # both under the county bureau


def test_every_organisation_has_an_institution_code(county_resources):
    values = []
    for org in _of_type(county_resources, "Organization"):
        (identifier,) = [i for i in org["identifier"] if i["system"] == codes.OID_INSTITUTION]
        values.append(identifier["value"])
        if org["id"] != LAB_ID:
            assert is_valid_unified_social_credit_code(identifier["value"])
    assert len(set(values)) == len(values)


def test_each_township_has_a_guide_doctor_and_each_clinic_a_village_doctor(county_resources):
    roles = Counter(r["code"][0]["coding"][0]["code"]
                    for r in _of_type(county_resources, "PractitionerRole"))
    assert roles == {"guide-doctor": 10, "village-doctor": 100}
    assert len(_of_type(county_resources, "Practitioner")) == 110
    assert len(_of_type(county_resources, "Location")) >= 112


def test_every_resource_validates_as_fhir_r4b(county_resources):
    for resource in county_resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_ids_are_valid_and_unique(county_resources):
    keys = [(r["resourceType"], r["id"]) for r in county_resources]
    assert len(set(keys)) == len(keys)
    assert all(ID_PATTERN.match(r["id"]) for r in county_resources)


def test_every_reference_points_to_an_earlier_or_same_batch_resource(county_batches):
    known: set[str] = set()
    for batch in county_batches:
        known |= {f"{r['resourceType']}/{r['id']}" for r in batch}
        for resource in batch:
            for ref in _references(resource):
                assert ref in known, (resource["id"], ref)


def test_resident_ids_are_valid_unique_and_match_birth_date_and_sex(large_county):
    patients = _of_type(large_county, "Patient")
    seen = set()
    for patient in patients:
        (rid,) = [i["value"] for i in patient["identifier"] if i["system"] == codes.OID_RESIDENT_ID]
        assert is_valid_resident_id(rid)
        assert rid[6:14] == patient["birthDate"].replace("-", "")
        assert int(rid[16]) % 2 == (1 if patient["gender"] == "male" else 0)
        seen.add(rid)
    assert len(seen) == len(patients)


def test_health_record_numbers_match_the_address_and_clinic(large_county):
    numbers = set()
    for patient in _of_type(large_county, "Patient"):
        (number,) = [i["value"] for i in patient["identifier"]
                     if i["system"] == codes.OID_HEALTH_RECORD]
        division = patient["address"][0]["extension"][0]["valueCoding"]["code"]
        assert len(number) == 17 and number.isdigit()
        assert number[:12] == division and division.startswith("430530")
        assert 101 <= int(number[9:12]) <= 199  # village committee
        township, village = int(number[6:9]) - 100, int(number[9:12]) - 100
        assert patient["managingOrganization"]["reference"] == (
            f"Organization/org-vc-{township:02d}-{village:02d}")
        numbers.add(number)
    assert len(numbers) == 3000


def test_patients_are_35_to_90_and_skewed_older(large_county):
    ages = []
    for patient in _of_type(large_county, "Patient"):
        born = date.fromisoformat(patient["birthDate"])
        ages.append(REFERENCE_DATE.year - born.year
                    - ((REFERENCE_DATE.month, REFERENCE_DATE.day) < (born.month, born.day)))
        assert re.fullmatch(r"[\u4e00-\u9fff]{2,4}", patient["name"][0]["text"])
    assert min(ages) >= 35 and max(ages) <= 90
    assert sum(ages) / len(ages) > 60


def test_prevalence_is_about_sixty_and_twenty_five_percent(large_county):
    conditions = defaultdict(set)
    for condition in _of_type(large_county, "Condition"):
        conditions[condition["code"]["coding"][0]["code"]].add(condition["subject"]["reference"])
    assert 0.55 < len(conditions["I10"]) / 3000 < 0.65
    assert 0.21 < len(conditions["E11.9"]) / 3000 < 0.29
    assert len(conditions["I10"] & conditions["E11.9"]) > 300


def test_managed_patients_have_four_follow_ups_a_year_at_their_clinic(county_batches):
    for batch in county_batches[1:31]:
        patient = batch[0]
        follow_ups = [r for r in batch if r["resourceType"] == "Encounter"
                      and r["type"][0]["coding"][0]["code"].endswith("follow-up")]
        if not any(r["resourceType"] == "Condition" for r in batch):
            assert not follow_ups
            continue
        # the default county keeps one year of quarterly follow-ups
        assert len(follow_ups) == 4
        quarters = set()
        for encounter in follow_ups:
            assert encounter["class"]["code"] == "AMB"
            assert encounter["serviceProvider"] == patient["managingOrganization"]
            start = datetime.fromisoformat(encounter["period"]["start"])
            assert start < datetime.fromisoformat(encounter["period"]["end"])
            assert date(2025, 7, 1) <= start.date() <= REFERENCE_DATE
            quarters.add((start.year, (start.month - 1) // 3))
        assert len(quarters) == 4


def test_follow_up_observations_are_coded_and_linked(county_batches):
    for batch in county_batches[1:31]:
        ids = {f"{r['resourceType']}/{r['id']}" for r in batch}
        for obs in (r for r in batch if r["resourceType"] == "Observation"):
            assert obs["status"] == "final"
            assert obs["effectiveDateTime"].endswith("+08:00")
            assert obs["subject"]["reference"] == f"Patient/{batch[0]['id']}"
            code = obs["code"]["coding"][0]["code"]
            if code == "85354-9":
                assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
                assert [c["code"]["coding"][0]["code"] for c in obs["component"]] == [
                    "8480-6", "8462-4"]
                assert {c["valueQuantity"]["code"] for c in obs["component"]} == {"mm[Hg]"}
            if code in ("29463-7", "8867-4", "85354-9", "1558-6", "14771-0"):
                assert obs["encounter"]["reference"] in ids
            unit = {"29463-7": "kg", "8867-4": "/min", "1558-6": "mg/dL", "14771-0": "mmol/L",
                    "4548-4": "%", "2093-3": "mg/dL", "2160-0": "mg/dL"}.get(code)
            if unit:
                assert obs["valueQuantity"]["code"] == unit
                assert obs["valueQuantity"]["system"] == "http://unitsofmeasure.org"


def test_both_glucose_units_appear(county_resources):
    observed = Counter(o["code"]["coding"][0]["code"]
                       for o in _of_type(county_resources, "Observation"))
    glucose = {code: observed[code] for code in ("1558-6", "14771-0")}
    assert glucose["1558-6"] > 0 and glucose["14771-0"] > 0


def test_readings_are_mostly_controlled_with_some_urgent(large_county):
    sbp, glucose = [], []
    for obs in _of_type(large_county, "Observation"):
        code = obs["code"]["coding"][0]["code"]
        if code == "85354-9" and "-f" in obs["id"]:
            sbp.append(obs["component"][0]["valueQuantity"]["value"])
        elif code == "14771-0":
            glucose.append(obs["valueQuantity"]["value"])
        elif code == "1558-6":
            glucose.append(obs["valueQuantity"]["value"] / codes.GLUCOSE_MG_PER_DL_PER_MMOL_PER_L)
    assert sum(v < 140 for v in sbp) / len(sbp) > 0.55
    assert 0.003 < sum(v >= 180 for v in sbp) / len(sbp) < 0.05
    assert sum(v < 7.0 for v in glucose) / len(glucose) > 0.45
    assert any(v >= 16.7 for v in glucose) and any(v < 3.9 for v in glucose)


def test_yearly_lab_reports_come_from_the_county_lab(county_batches):
    for batch in county_batches[1:31]:
        by_ref = {f"{r['resourceType']}/{r['id']}": r for r in batch}
        reports = [r for r in batch if r["resourceType"] == "DiagnosticReport"]
        managed = any(r["resourceType"] == "Condition" for r in batch)
        assert len(reports) == (1 if managed else 0)  # one a year, one year of history
        diabetic = any(r["resourceType"] == "Condition"
                       and r["code"]["coding"][0]["code"] == "E11.9" for r in batch)
        for report in reports:
            assert report["performer"] == [{"reference": f"Organization/{LAB_ID}"}]
            results = [by_ref[r["reference"]] for r in report["result"]]
            assert {o["code"]["coding"][0]["code"] for o in results} == (
                {"4548-4", "2093-3", "2160-0"} if diabetic else {"2093-3", "2160-0"})
            assert all(o["performer"] == report["performer"] for o in results)


def test_care_plan_addresses_the_conditions_and_is_authored_by_the_village_doctor(
        county_batches):
    for batch in county_batches[1:31]:
        patient = batch[0]
        conditions = {f"Condition/{r['id']}" for r in batch if r["resourceType"] == "Condition"}
        plans = [r for r in batch if r["resourceType"] == "CarePlan"]
        assert len(plans) == (1 if conditions else 0)
        for plan in plans:
            assert plan["status"] == "active"
            assert {a["reference"] for a in plan["addresses"]} == conditions
            assert plan["author"] == patient["generalPractitioner"][0]
            assert plan["author"]["reference"].startswith("PractitionerRole/role-vc-")


def test_self_management_groups_in_a_third_of_villages(large_county):
    groups = _of_type(large_county, "Group")
    patients = {f"Patient/{p['id']}": p for p in _of_type(large_county, "Patient")}
    managed = {c["subject"]["reference"] for c in _of_type(large_county, "Condition")}
    assert 30 <= len(groups) <= 34
    for group in groups:
        assert group["type"] == "person" and group["actual"] is True
        assert group["name"].endswith("自我管理小组") and "村" in group["name"]
        assert group["quantity"] == len(group["member"]) <= 20
        assert group["managingEntity"]["reference"].startswith("PractitionerRole/role-th-")
        clinics = {patients[m["entity"]["reference"]]["managingOrganization"]["reference"]
                   for m in group["member"]}
        assert len(clinics) == 1  # all members live in the group's village
        assert all(m["entity"]["reference"] in managed for m in group["member"])
    full = [g for g in groups if g["quantity"] >= 15]
    assert len(full) >= len(groups) // 2


def test_nothing_is_dated_after_the_reference_date(county_resources):
    limit = REFERENCE_DATE.isoformat()
    for resource in county_resources:
        for key in ("effectiveDateTime", "issued", "birthDate", "onsetDateTime"):
            if key in resource:
                assert resource[key][:10] <= limit


def test_resources_share_no_nested_objects(county_resources):
    """A writer may add meta or normalise in place without touching other resources."""
    owner: dict[int, str] = {}

    def walk(node, resource_key):
        if isinstance(node, (dict, list)):
            assert owner.setdefault(id(node), resource_key) == resource_key, resource_key
            for child in node.values() if isinstance(node, dict) else node:
                walk(child, resource_key)

    for resource in county_resources:
        walk(resource, f"{resource['resourceType']}/{resource['id']}")
