"""A small county for the access tests, and HTTP clients acting for its organisations.

Shape (``partOf`` in brackets)::

    bureau 卫健局
    ├── hospital 人民医院                 [bureau]
    │   ├── lab 检验科 (county-wide)       [hospital]
    │   ├── th-a 石门镇卫生院               [hospital]
    │   │   ├── vc-a1 桃溪村卫生室  -> patient p-a1
    │   │   └── vc-a2 柳湾村卫生室  -> patient p-a2
    │   └── th-b 青山镇卫生院               [hospital]
    │       └── vc-b1 松林村卫生室  -> patient p-b1
    └── cdc 疾控中心 (county-wide)         [bureau]

Each patient has an Observation, a Condition and an Encounter (``obs-<x>``, ``cond-<x>``,
``enc-<x>``), written by the server itself (``SYSTEM``) before the test.
"""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from fhir_server.auth.access import ACCESS_SCOPE_EXTENSION
from fhir_server.auth.identity import SYSTEM, Identity
from fhir_server.demo import resident_id
from fhir_server.storage.access import ACCESS_TABLES
from tests.conftest import _truncate, get_token, register_client

RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"
ORGANIZATIONS = {  # id -> (name, partOf, county-wide)
    "bureau": ("县卫生健康局", None, False),
    "hospital": ("县人民医院", "bureau", False),
    "lab": ("县人民医院检验科", "hospital", True),
    "cdc": ("县疾病预防控制中心", "bureau", True),
    "th-a": ("石门镇卫生院", "hospital", False),
    "th-b": ("青山镇卫生院", "hospital", False),
    "vc-a1": ("桃溪村卫生室", "th-a", False),
    "vc-a2": ("柳湾村卫生室", "th-a", False),
    "vc-b1": ("松林村卫生室", "th-b", False),
}
# patient -> (managing clinic, family name, given name, resident ID)
PATIENTS = {
    "p-a1": ("vc-a1", "王", "秀英", resident_id("430121", date(1956, 3, 14), 12, "female")),
    "p-a2": ("vc-a2", "李", "建国", resident_id("430121", date(1949, 10, 1), 7, "male")),
    "p-b1": ("vc-b1", "张", "桂兰", resident_id("430121", date(1961, 6, 30), 3, "female")),
}

# The callers of the access matrix: (organisation, scopes)
CALLERS = {
    "county": ("hospital", "system/*.cruds"),
    "township": ("th-a", "user/*.cruds"),
    "village": ("vc-a1", "user/*.cruds"),
    "other_village": ("vc-b1", "user/*.cruds"),
    "cdc": ("cdc", "system/*.rs"),
    "lab": ("lab", "system/Observation.c system/DiagnosticReport.c"),
    "auditor": ("bureau", "system/AuditEvent.rs"),
}
# Which patients each caller sees
SEES = {
    "county": {"p-a1", "p-a2", "p-b1"},
    "township": {"p-a1", "p-a2"},
    "village": {"p-a1"},
    "other_village": {"p-b1"},
    "cdc": {"p-a1", "p-a2", "p-b1"},
}


def identity(caller: str) -> Identity:
    org, scopes = CALLERS[caller]
    return Identity(f"{caller}-client", f"Organization/{org}", tuple(scopes.split()))


def organization(org_id: str) -> dict:
    name, parent, county_wide = ORGANIZATIONS[org_id]
    org: dict = {"resourceType": "Organization", "id": org_id, "name": name, "active": True}
    if parent:
        org["partOf"] = {"reference": f"Organization/{parent}"}
    if county_wide:
        org["extension"] = [{"url": ACCESS_SCOPE_EXTENSION, "valueCode": "county"}]
    return org


def patient(pid: str) -> dict:
    clinic, family, given, number = PATIENTS[pid]
    return {
        "resourceType": "Patient", "id": pid,
        "identifier": [{"system": RESIDENT_ID, "value": number}],
        "name": [{"text": family + given, "family": family, "given": [given]}],
        "gender": "female", "birthDate": "1956-03-14",
        "managingOrganization": {"reference": f"Organization/{clinic}"},
    }


def observation(obs_id: str, pid: str, value: float = 7.8, when: str = "2026-05-01") -> dict:
    return {
        "resourceType": "Observation", "id": obs_id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "1558-6"}]},
        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                          "code": "mmol/L"},
    }


def clinical(pid: str) -> list[dict]:
    tag = pid.removeprefix("p-")
    return [
        observation(f"obs-{tag}", pid),
        {"resourceType": "Condition", "id": f"cond-{tag}", "subject": {"reference": f"Patient/{pid}"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}},
        {"resourceType": "Encounter", "id": f"enc-{tag}", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "subject": {"reference": f"Patient/{pid}"},
         "serviceProvider": {"reference": f"Organization/{PATIENTS[pid][0]}"}},
    ]


@pytest.fixture(autouse=True)
def _clean_access(server):
    """Queued audit events of an earlier test are written, then everything is emptied."""
    server.audit.flush()
    _truncate(server)
    with server.db.write() as conn:
        for table in ACCESS_TABLES:
            conn.execute(delete(table))
    yield
    server.audit.flush()


@pytest.fixture
def county(server):
    """The county above, stored by the server itself."""
    resources = [organization(o) for o in ORGANIZATIONS]
    for pid in PATIENTS:
        resources += [patient(pid), *clinical(pid)]
    with server.db.write() as conn:
        for resource in resources:
            server.resources.create(resource, res_id=resource["id"], conn=conn, identity=SYSTEM)
    return resources


@pytest.fixture(scope="session")
def _access_tokens() -> dict:
    return {}


@pytest.fixture
def as_(app, county, _access_tokens):
    """``as_("village")``: an HTTP client with a real token of that caller (see CALLERS)."""
    opened = []

    def make(caller: str) -> FhirAs:
        if caller not in _access_tokens:
            org, scopes = CALLERS[caller]
            client_id, secret = register_client(app, f"{caller}-client", f"Organization/{org}", scopes)
            with TestClient(app, base_url="http://testserver") as http:
                _access_tokens[caller] = get_token(http, client_id, secret)
        http = TestClient(app, base_url="http://testserver")
        http.headers["Authorization"] = f"Bearer {_access_tokens[caller]}"
        opened.append(http)
        return FhirAs(http)

    yield make
    for http in opened:
        http.close()


class FhirAs:
    """Requests relative to /fhir, with a few helpers for the matrix."""

    def __init__(self, http: TestClient):
        self.http = http

    def get(self, path: str, **kw):
        return self.http.get("/fhir/" + path.lstrip("/"), **kw)

    def post(self, path: str, json=None, **kw):
        return self.http.post("/fhir/" + path.lstrip("/"), json=json, **kw)

    def put(self, path: str, json=None, **kw):
        return self.http.put("/fhir/" + path.lstrip("/"), json=json, **kw)

    def patch(self, path: str, json=None, **kw):
        headers = {"Content-Type": "application/json-patch+json"}
        return self.http.patch("/fhir/" + path.lstrip("/"), json=json, headers=headers, **kw)

    def delete(self, path: str, **kw):
        return self.http.delete("/fhir/" + path.lstrip("/"), **kw)

    def bundle(self, path: str) -> dict:
        response = self.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    def ids(self, path: str, mode: str | None = None) -> set[str]:
        """``Type/id`` of the entries of a search or history (only ``mode`` entries if given)."""
        bundle = self.bundle(path)
        return {
            f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", [])
            if "resource" in e and e["resource"]["resourceType"] != "OperationOutcome"
            and (mode is None or e.get("search", {}).get("mode") == mode)
        }
