"""End to end: the real server process (``python -m fhir_server serve``) on a loopback port,
driven over HTTP by a real FHIR client library (fhirpy's synchronous client) and raw httpx.

The database is a fresh SQLite file, or ``FHIR_TEST_DATABASE_URL`` when it is set (then its
tables may hold other tests' data, so every identifier and name here is unique to the run).

Credentials are obtained as a deployment would: a client registered with
``python -m fhir_server clients add`` (or the demo client that ``serve --demo`` prints) gets an
access token from ``POST /auth/token``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
RESIDENT_ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"  # 居民身份证号码 (GB 11643)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
STARTUP_TIMEOUT = 60.0


# -- the server process ----------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, process: subprocess.Popen, base: str, log_path: Path):
        self.process = process
        self.base = base
        self.log_path = log_path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return "(no log)"


def _process_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("FHIR_DATABASE_URL", None)
    env.pop("FHIR_BASE_URL", None)
    return env


def register_client(tmp_path: Path, database_url: str, scope: str = "system/*.cruds") -> tuple[str, str]:
    """``python -m fhir_server clients add --json``: the client id and secret it prints."""
    command = [sys.executable, "-m", "fhir_server", "clients", "add", "--name", "e2e test",
               "--unrestricted", "--scope", scope, "--database-url", database_url, "--json"]
    done = subprocess.run(command, cwd=tmp_path, env=_process_env(), capture_output=True, text=True,
                          timeout=120, check=True)
    printed = json.loads(done.stdout)
    return printed["client_id"], printed["client_secret"]


def access_token(base: str, client_id: str, secret: str) -> str:
    token_url = base.removesuffix("/fhir") + "/auth/token"
    response = httpx.post(token_url, data={"grant_type": "client_credentials"}, auth=(client_id, secret),
                          trust_env=False, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@contextmanager
def running_server(tmp_path: Path, database_url: str, *extra: str, timeout: float = STARTUP_TIMEOUT):
    """Start ``python -m fhir_server serve`` and yield it once ``/fhir/metadata`` answers 200.

    The process is terminated (then killed, if need be) when the block ends, failed or not.
    """
    port = _free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    log_path = tmp_path / f"server-{port}.log"
    env = _process_env()
    command = [
        sys.executable, "-m", "fhir_server", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--database-url", database_url, *extra,
    ]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(process, base, log_path)
    try:
        _wait_until_ready(server, timeout)
        yield server
    finally:
        _stop(process)


def _wait_until_ready(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    with httpx.Client(trust_env=False, timeout=5) as http:
        while time.monotonic() < deadline:
            code = server.process.poll()
            if code is not None:
                pytest.fail(f"the server process exited with {code} before answering:\n{server.log()}")
            try:
                response = http.get(f"{server.base}/metadata")
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}: {response.text[:500]}"
            except httpx.TransportError as exc:
                last_error = repr(exc)
            time.sleep(0.25)
    pytest.fail(
        f"{server.base}/metadata did not answer 200 within {timeout:.0f} s ({last_error}):\n{server.log()}"
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@pytest.fixture
def database_url_for_process(tmp_path) -> str:
    return os.environ.get("FHIR_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'e2e.sqlite'}"


@pytest.fixture
def live_server(tmp_path, database_url_for_process):
    with running_server(tmp_path, database_url_for_process) as server:
        yield server


@pytest.fixture
def token(tmp_path, live_server, database_url_for_process) -> str:
    client_id, secret = register_client(tmp_path, database_url_for_process)
    return access_token(live_server.base, client_id, secret)


@pytest.fixture
def http(live_server, token):
    with httpx.Client(base_url=live_server.base, trust_env=False, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture
def fhir_client(live_server, token, monkeypatch) -> SyncFHIRClient:
    # fhirpy uses requests, which honours proxy variables: never proxy the loopback server.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return SyncFHIRClient(live_server.base, authorization=f"Bearer {token}", requests_config={"timeout": 30})


# -- test data ---------------------------------------------------------------------------------

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _resident_id(rng: random.Random, birth: date, female: bool) -> str:
    """A GB 11643 resident ID with a valid check character (area 330782: a county in Zhejiang)."""
    sequence = rng.randrange(0, 500) * 2 + (0 if female else 1)  # odd for men, even for women
    body = f"330782{birth:%Y%m%d}{sequence:03d}"
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11]
    return body + check


def _unique_person() -> tuple[str, str, str, date]:
    rng = random.Random(uuid.uuid4().int)
    birth = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 365 * 40))
    family = rng.choice(["欧阳", "司马", "诸葛", "上官", "慕容"])
    given = "".join(rng.choice("明轩子涵浩然梓萱雨桐思远俊杰嘉怡") for _ in range(3))
    return _resident_id(rng, birth, female=False), family, given, birth


def _bp_component(code: str, display: str, value: int) -> dict:
    return {
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
    }


# -- tests -------------------------------------------------------------------------------------

def test_fhir_client_round_trip_against_the_real_process(live_server, fhir_client, http):
    resident_id, family, given, birth = _unique_person()
    full_name = family + given
    shared_database = bool(os.environ.get("FHIR_TEST_DATABASE_URL"))

    # CapabilityStatement
    metadata = http.get("/metadata", headers={"Accept": "application/fhir+json"})
    assert metadata.status_code == 200, metadata.text
    capability = metadata.json()
    assert capability["resourceType"] == "CapabilityStatement"
    assert capability["fhirVersion"].startswith("4.0")
    [rest] = [r for r in capability["rest"] if r["mode"] == "server"]
    [patient_capability] = [r for r in rest["resource"] if r["type"] == "Patient"]
    assert "search-type" in {i["code"] for i in patient_capability["interaction"]}

    # create a Patient with a Chinese name and a resident ID
    patient = fhir_client.resource(
        "Patient",
        identifier=[{"use": "official", "system": RESIDENT_ID_SYSTEM, "value": resident_id}],
        name=[{"use": "official", "text": full_name, "family": family, "given": [given]}],
        gender="male",
        birthDate=birth.isoformat(),
        address=[{"text": "浙江省金华市浦江县", "country": "CN"}],
    )
    patient.save()
    assert patient.id, "the server did not return the created Patient"
    assert patient["meta"]["versionId"] == "1"

    # and a blood pressure panel for them
    observation = fhir_client.resource(
        "Observation",
        status="final",
        category=[{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }]}],
        code={
            "coding": [{"system": LOINC, "code": "85354-9",
                        "display": "Blood pressure panel with all children optional"}],
            "text": "血压",
        },
        subject=patient.to_reference(),
        effectiveDateTime="2026-05-01T09:30:00+08:00",
        component=[
            _bp_component("8480-6", "Systolic blood pressure", 142),
            _bp_component("8462-4", "Diastolic blood pressure", 88),
        ],
    )
    observation.save()
    assert observation.id

    # read both back
    read_patient = fhir_client.reference("Patient", patient.id).to_resource()
    assert read_patient["name"][0]["family"] == family
    assert read_patient["name"][0]["given"] == [given]
    assert read_patient["identifier"][0]["value"] == resident_id
    read_observation = fhir_client.reference("Observation", observation.id).to_resource()
    assert read_observation["subject"]["reference"] == f"Patient/{patient.id}"
    components = {
        c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in read_observation["component"]
    }
    assert components["8480-6"]["value"] == 142
    assert components["8462-4"]["value"] == 88
    assert {q["code"] for q in components.values()} == {"mm[Hg]"}

    # chained search: Observation?subject:Patient.identifier=system|value
    found = (
        fhir_client.resources("Observation")
        .search(subject__Patient__identifier=f"{RESIDENT_ID_SYSTEM}|{resident_id}")
        .fetch_all()
    )
    assert [o.id for o in found] == [observation.id]
    found = (
        fhir_client.resources("Observation")
        .search(subject__Patient__identifier=f"{RESIDENT_ID_SYSTEM}|{resident_id}",
                code=f"{LOINC}|85354-9")
        .fetch_all()
    )
    assert [o.id for o in found] == [observation.id]

    # Patient?name= with Chinese characters (the full name, and the family name alone)
    by_name = fhir_client.resources("Patient").search(name=full_name).fetch_all()
    assert patient.id in {p.id for p in by_name}
    if not shared_database:
        assert [p.id for p in by_name] == [patient.id]
    by_family = fhir_client.resources("Patient").search(family=family).fetch_all()
    assert patient.id in {p.id for p in by_family}
    assert fhir_client.resources("Patient").search(name=full_name + "不存在").fetch_all() == []

    # update: version 2, and the ETag says so
    patient["telecom"] = [{"system": "phone", "value": "13800000000", "use": "mobile"}]
    patient.save()
    assert patient["meta"]["versionId"] == "2"
    response = http.get(f"/Patient/{patient.id}", headers={"Accept": "application/fhir+json"})
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"2"'
    assert response.json()["telecom"][0]["value"] == "13800000000"
    assert http.get(f"/Patient/{patient.id}/_history/1").json()["meta"]["versionId"] == "1"

    # delete: a later read is 410 Gone
    observation.delete()
    patient.delete()
    for path in (f"/Observation/{observation.id}", f"/Patient/{patient.id}"):
        gone = http.get(path, headers={"Accept": "application/fhir+json"})
        assert gone.status_code == 410, (path, gone.status_code, gone.text)
    with pytest.raises(ResourceNotFound):
        fhir_client.reference("Patient", patient.id).to_resource()
    assert fhir_client.resources("Observation").search(
        subject__Patient__identifier=f"{RESIDENT_ID_SYSTEM}|{resident_id}"
    ).fetch_all() == []


def test_without_a_token_the_real_process_answers_401_but_serves_metadata(live_server):
    with httpx.Client(base_url=live_server.base, trust_env=False, timeout=30) as anonymous:
        assert anonymous.get("/metadata").status_code == 200
        refused = anonymous.get("/Patient")
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert refused.json()["resourceType"] == "OperationOutcome"


def test_demo_county_loads_into_a_fresh_database_with_a_printed_demo_client(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    with running_server(tmp_path, database_url, "--demo", "20", timeout=180) as server:
        client_id = re.search(r"client id:\s+(\S+)", server.log())
        secret = re.search(r"client secret:\s+(\S+)", server.log())
        assert client_id and secret, server.log()
        token = access_token(server.base, client_id[1], secret[1])
        with httpx.Client(base_url=server.base, trust_env=False, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            response = http.get("/Patient", params={"_summary": "count"},
                                headers={"Accept": "application/fhir+json"})
            assert response.status_code == 200, response.text
            bundle = response.json()
            assert bundle["resourceType"] == "Bundle"
            assert bundle["total"] == 20
            assert not [e for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]
            observations = http.get("/Observation", params={"_summary": "count"}).json()
            assert observations["total"] > 0


def test_worker_processes_share_long_lived_connections_evenly(tmp_path, database_url_for_process):
    """``serve --workers 2``: four keep-alive connections opened at once end up two per worker
    (the listener gives each new one to a worker with the fewest), and every worker answers."""
    import http.client

    with running_server(tmp_path, database_url_for_process, "--workers", "2") as server:
        port = int(server.base.split(":")[2].split("/")[0])
        serving, deadline = set(), time.monotonic() + 60
        while len(serving) < 2 and time.monotonic() < deadline:  # until both workers take connections
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            probe.request("GET", "/fhir/metadata")
            probe.getresponse().read()
            serving |= set(_connections_per_process(server.process.pid, port))
            probe.close()
            time.sleep(0.05)
        assert len(serving) == 2, "the second worker never took a connection"
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(4)]
        for conn in connections:
            conn.connect()
        for _ in range(3):
            for conn in connections:
                conn.request("GET", "/fhir/metadata")
                response = conn.getresponse()
                assert response.status == 200
                response.read()
        per_worker = _connections_per_process(server.process.pid, port)
        for conn in connections:
            conn.close()
    assert sorted(per_worker.values()) == [2, 2], per_worker


def children_of(pid: int) -> list[int]:
    """The child processes of ``pid`` (a server's workers)."""
    return [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]


def _connections_per_process(parent: int, port: int) -> dict[int, int]:
    """Established connections on the local ``port`` held by each child of ``parent`` (from /proc)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    established.add(fields[9])  # the socket's inode
    counts = {}
    for child in children_of(parent):
        sockets = {os.readlink(f"/proc/{child}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{child}/fd")
                   if os.readlink(f"/proc/{child}/fd/{fd}").startswith("socket:[")}
        if sockets & established:
            counts[child] = len(sockets & established)
    return counts


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stopped_server_writes_the_audit_events_still_queued(tmp_path, database_url_for_process, monkeypatch,
                                                               workers):
    """SIGTERM: a read of the last moments becomes an AuditEvent before the process ends (the
    flush interval is set far beyond the test, so only the stop can have written it)."""
    monkeypatch.setenv("FHIR_AUDIT_FLUSH_SECONDS", "600")
    client_id, secret = register_client(tmp_path, database_url_for_process)
    with running_server(tmp_path, database_url_for_process, "--workers", workers) as server:
        headers = {"Authorization": f"Bearer {access_token(server.base, client_id, secret)}"}
        with httpx.Client(base_url=server.base, headers=headers, trust_env=False, timeout=30) as http:
            created = http.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "停"}]},
                                headers={"Content-Type": "application/fhir+json"})
            assert created.status_code == 201, created.text
            patient = created.json()["id"]
            assert http.get(f"/Patient/{patient}").status_code == 200
        server.process.terminate()
        # uvicorn ends by raising the signal again once it has stopped: -SIGTERM (workers' parent: 0)
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM), server.log()
    monkeypatch.delenv("FHIR_AUDIT_FLUSH_SECONDS")
    auditor_id, auditor_secret = register_client(tmp_path, database_url_for_process, "system/AuditEvent.rs")
    with running_server(tmp_path, database_url_for_process) as server:
        token = access_token(server.base, auditor_id, auditor_secret)
        bundle = httpx.get(f"{server.base}/AuditEvent", params={"patient": f"Patient/{patient}"},
                           headers={"Authorization": f"Bearer {token}"}, trust_env=False, timeout=30).json()
        subtypes = {c["code"] for entry in bundle.get("entry", []) for c in entry["resource"]["subtype"]}
        assert "read" in subtypes, subtypes  # written at the stop; the create's record was journaled
