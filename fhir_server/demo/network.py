"""The county's three-level network: organisations, locations, practitioners and their roles.

Shape (``partOf`` links in brackets)::

    county health bureau 卫生健康局
    ├── county people's hospital 人民医院 (lead of the medical community)  [-> bureau]
    │   ├── its laboratory 检验科                                          [-> hospital]
    │   └── township health centre 镇卫生院, one per township              [-> hospital]
    │       └── village clinic 村卫生室, one per village                    [-> centre]
    └── county CDC 疾病预防控制中心                                         [-> bureau]

Each township centre has a guide doctor (指导医生) and each village clinic a village
doctor (乡村医生), as Practitioner plus PractitionerRole. Every organisation carries an
institution code (``urn:oid:2.16.156.10011.1.5``): a GB 32100 unified social credit code,
or for the laboratory the hospital's code with the department suffix ``-30`` (医学检验科
in the national list of clinical subjects). Townships are numbered 101-110 (towns) and
villages 101-110 within their township (village committees), so a village's 12-digit
division code is ``county (6) + township (3) + village (3)``, the first 12 digits of the
health-record numbers of its residents.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass

from fhir_server.auth.access import ACCESS_SCOPE_EXTENSION
from fhir_server.demo import codes
from fhir_server.demo.datatypes import concept, reference
from fhir_server.identifiers import unified_social_credit_code
from fhir_server.demo.names import person_name, place_names
from fhir_server.demo.parameters import CountyArea, CountyParameters

__all__ = ["Clinic", "Township", "Network", "build_network", "address", "practitioner_name"]

BUREAU_ID = "org-county-health-bureau"
HOSPITAL_ID = "org-county-hospital"
LAB_ID = "org-county-lab"
CDC_ID = "org-county-cdc"
LAB_DEPARTMENT_SUFFIX = "-30"


@dataclass(frozen=True, slots=True)
class Clinic:
    """A village clinic with its village and village doctor."""

    township_number: int
    number: int
    township_code: str  # 3 digits, 101-199
    village_code: str  # 3 digits, 101-199 (village committee)
    township_name: str  # e.g. 石门镇
    village_name: str  # e.g. 桃溪村
    organization_id: str
    location_id: str
    doctor_id: str  # Practitioner
    doctor_role_id: str  # PractitionerRole
    guide_role_id: str  # the township's guide doctor (PractitionerRole)
    division_code: str  # 12 digits
    population_weight: float
    position: tuple[float, float]


@dataclass(frozen=True, slots=True)
class Township:
    number: int
    code: str
    name: str
    organization_id: str
    location_id: str
    guide_id: str
    guide_role_id: str
    clinics: tuple[Clinic, ...]


@dataclass(frozen=True)
class Network:
    area: CountyArea
    townships: tuple[Township, ...]
    clinics: tuple[Clinic, ...]
    resources: list[dict]


def address(area: CountyArea, line: str, division_code: str | None = None,
            place: str | None = None, use: str = "work") -> dict:
    """A Chinese address: full text, parts, and the division code as an extension."""
    result: dict = {
        "use": use,
        "type": "physical",
        "text": f"{area.province}{area.city}{area.county}{line}",
        "line": [line],
        "city": area.city,
        "district": area.county,
        "state": area.province,
        "country": "CN",
    }
    if division_code is not None:
        coding = {"system": codes.ADMINISTRATIVE_DIVISION, "code": division_code}
        if place is not None:
            coding["display"] = place
        result["extension"] = [{"url": codes.ADDRESS_DIVISION_EXTENSION, "valueCoding": coding}]
    return result


def practitioner_name(family: str, given: str) -> list[dict]:
    return [{"use": "official", "text": family + given, "family": family, "given": [given]}]


def _institution_code(rng: random.Random, county_code: str, category: str = "2") -> str:
    body = "4" + "".join(rng.choice("0123456789") for _ in range(7))
    return unified_social_credit_code(county_code, body, authority="1", category=category)


def _organization(org_id: str, name: str, code: str, type_code: str, type_display: str,
                  type_text: str, addr: dict, part_of: str | None) -> dict:
    org = {
        "resourceType": "Organization",
        "id": org_id,
        "meta": codes.profile(codes.PROFILES["Organization"]),
        "identifier": [{"use": "official", "system": codes.OID_INSTITUTION, "value": code}],
        "active": True,
        "type": [concept(codes.ORGANIZATION_TYPE, type_code, type_display, type_text)],
        "name": name,
        "address": [addr],
    }
    if part_of is not None:
        org["partOf"] = reference("Organization", part_of, None)
    return org


def _county_wide(org: dict) -> dict:
    """Mark an organisation that serves every patient of the county (the laboratory, the CDC):
    its clients see what the county sees (fhir_server/auth/access.py)."""
    org["extension"] = [{"url": ACCESS_SCOPE_EXTENSION, "valueCode": "county"}]
    return org


def _location(loc_id: str, name: str, addr: dict, org_id: str, position: tuple[float, float],
              physical_type: str = "bu", part_of: str | None = None) -> dict:
    loc = {
        "resourceType": "Location",
        "id": loc_id,
        "status": "active",
        "name": name,
        "mode": "instance",
        "physicalType": concept(codes.LOCATION_PHYSICAL_TYPE, physical_type),
        "address": addr,
        "position": {"longitude": round(position[0], 5), "latitude": round(position[1], 5)},
        "managingOrganization": reference("Organization", org_id),
    }
    if part_of is not None:
        loc["partOf"] = reference("Location", part_of)
    return loc


def _practitioner(rng: random.Random, prac_id: str) -> dict:
    sex = "male" if rng.random() < 0.6 else "female"
    family, given = person_name(rng, sex)
    return {
        "resourceType": "Practitioner",
        "id": prac_id,
        "meta": codes.profile(codes.PROFILES["Practitioner"]),
        "active": True,
        "name": practitioner_name(family, given),
        "gender": sex,
    }


def _role(role_id: str, prac_id: str, org_id: str, loc_id: str, code: str, text: str) -> dict:
    return {
        "resourceType": "PractitionerRole",
        "id": role_id,
        "meta": codes.profile(codes.PROFILES["PractitionerRole"]),
        "active": True,
        "practitioner": reference("Practitioner", prac_id),
        "organization": reference("Organization", org_id),
        "code": [concept(codes.PRACTITIONER_ROLE, code, text, text)],
        "location": [reference("Location", loc_id)],
    }


def build_network(rng: random.Random, params: CountyParameters) -> Network:
    """Build the network and its resources (organisations first, then locations, people)."""
    area = params.area
    county = area.county
    cx, cy = area.centre
    taken: set[str] = {"城关"}
    township_names = ["城关"] + place_names(rng, params.townships - 1, taken)
    organizations: list[dict] = []
    locations: list[dict] = []
    people: list[dict] = []

    hospital_code = _institution_code(rng, area.county_code)
    seat = f"城关镇人民路{rng.randint(1, 200)}号"
    organizations += [
        _organization(BUREAU_ID, f"{county}卫生健康局", _institution_code(rng, area.county_code, "1"),
                      "govt", "Government", "县卫生健康行政部门",
                      address(area, f"城关镇政府路{rng.randint(1, 99)}号"), None),
        _organization(HOSPITAL_ID, f"{county}人民医院", hospital_code, "prov", "Healthcare Provider",
                      "县级综合医院（县域医共体牵头医院）", address(area, seat), BUREAU_ID),
        _county_wide(_organization(
            LAB_ID, f"{county}人民医院检验科", hospital_code + LAB_DEPARTMENT_SUFFIX, "dept",
            "Hospital Department", "医学检验科", address(area, seat), HOSPITAL_ID)),
        _county_wide(_organization(
            CDC_ID, f"{county}疾病预防控制中心", _institution_code(rng, area.county_code), "govt",
            "Government", "县级疾病预防控制中心", address(area, f"城关镇卫生路{rng.randint(1, 99)}号"),
            BUREAU_ID)),
    ]
    locations += [
        _location("loc-county-hospital", f"{county}人民医院", address(area, seat), HOSPITAL_ID,
                  (cx, cy)),
        _location("loc-county-lab", f"{county}人民医院检验科", address(area, seat), LAB_ID,
                  (cx, cy), "ro", "loc-county-hospital"),
        _location("loc-county-cdc", f"{county}疾病预防控制中心",
                  address(area, f"城关镇卫生路{rng.randint(1, 99)}号"), CDC_ID,
                  (cx + 0.004, cy - 0.003)),
    ]

    townships: list[Township] = []
    village_orgs: list[dict] = []
    for t in range(1, params.townships + 1):
        t_name = township_names[t - 1] + "镇"
        t_code = f"{100 + t}"
        tag = f"{t:02d}"
        angle = 2 * math.pi * (t - 1) / params.townships
        radius = 0.0 if t == 1 else rng.uniform(0.12, 0.3)
        t_pos = (cx + radius * math.cos(angle) + 0.01, cy + radius * math.sin(angle))
        t_org, t_loc = f"org-th-{tag}", f"loc-th-{tag}"
        guide, guide_role = f"pra-th-{tag}", f"role-th-{tag}"
        t_division = f"{area.county_code}{t_code}000"
        t_addr = address(area, f"{t_name}正街{rng.randint(1, 120)}号", t_division, t_name)
        organizations.append(_organization(
            t_org, f"{t_name}卫生院", _institution_code(rng, area.county_code), "prov",
            "Healthcare Provider", "乡镇卫生院", t_addr, HOSPITAL_ID))
        locations.append(_location(t_loc, f"{t_name}卫生院", copy.deepcopy(t_addr), t_org, t_pos))
        people.append(_practitioner(rng, guide))
        people.append(_role(guide_role, guide, t_org, t_loc, "guide-doctor", "指导医生"))

        clinics: list[Clinic] = []
        for v, v_name in enumerate(place_names(rng, params.villages_per_township, taken), 1):
            v_name += "村"
            v_code = f"{100 + v}"
            vtag = f"{tag}-{v:02d}"
            division = f"{area.county_code}{t_code}{v_code}"
            position = (t_pos[0] + rng.uniform(-0.06, 0.06), t_pos[1] + rng.uniform(-0.06, 0.06))
            clinic = Clinic(
                township_number=t, number=v, township_code=t_code, village_code=v_code,
                township_name=t_name, village_name=v_name, organization_id=f"org-vc-{vtag}",
                location_id=f"loc-vc-{vtag}", doctor_id=f"pra-vc-{vtag}",
                doctor_role_id=f"role-vc-{vtag}", guide_role_id=guide_role,
                division_code=division, population_weight=rng.uniform(0.5, 1.5),
                position=position,
            )
            clinics.append(clinic)
            v_addr = address(area, f"{t_name}{v_name}村部", division, t_name + v_name)
            village_orgs.append(_organization(
                clinic.organization_id, f"{v_name}卫生室", _institution_code(rng, area.county_code),
                "prov", "Healthcare Provider", "村卫生室", v_addr, t_org))
            locations.append(_location(clinic.location_id, f"{t_name}{v_name}卫生室",
                                       copy.deepcopy(v_addr),
                                       clinic.organization_id, position))
            people.append(_practitioner(rng, clinic.doctor_id))
            people.append(_role(clinic.doctor_role_id, clinic.doctor_id, clinic.organization_id,
                                clinic.location_id, "village-doctor", "乡村医生"))
        townships.append(Township(t, t_code, t_name, t_org, t_loc, guide, guide_role,
                                  tuple(clinics)))

    # Parents before children: all township centres come before the village clinics.
    resources = organizations + village_orgs + locations + people
    all_clinics = tuple(c for township in townships for c in township.clinics)
    return Network(area, tuple(townships), all_clinics, resources)
