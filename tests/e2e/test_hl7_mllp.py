"""End to end: ``python -m fhir_server serve --mllp-port P`` as a real process, HL7 v2 sent over
a real MLLP socket, the resulting FHIR resources read back over HTTP with an access token.

The kill test streams ORU^R01 messages from several connections, kills the server with
SIGKILL in the middle, restarts it on the same database and proves that no ACKed message
was lost and that no message was half written.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from test_server_process import (
    _connections_per_process, _free_port, access_token, children_of, register_client, running_server,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters" / "hl7v2"))
from hl7_inbound_messages import RESULTS, oru_bytes, resident_id  # noqa: E402

from adapters.hl7v2.mllp import MllpClient  # noqa: E402

pytestmark = pytest.mark.e2e
RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"


@pytest.fixture
def database_url(tmp_path) -> str:
    return os.environ.get("FHIR_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'hl7.sqlite'}"


def msa(ack: bytes) -> list[str]:
    return next(s for s in ack.decode("utf-8", "replace").split("\r") if s.startswith("MSA")).split("|")


def http_client(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base, trust_env=False, timeout=30, headers={"Authorization": f"Bearer {token}"})


def search(http: httpx.Client, path: str, **params) -> list[dict]:
    response = http.get(path, params={"_count": "1000", **params}, headers={"Accept": "application/fhir+json"})
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", []) if e.get("search", {}).get("mode") == "match"]


def inbound(base: str, token: str, **params) -> list[dict]:
    """Every inbound record matching ``params`` (paged by id)."""
    records, after = [], 0
    with http_client(base.removesuffix("/fhir"), token) as http:
        while True:
            response = http.get("/hl7v2/inbound", params={**params, "after": str(after), "_count": "1000"})
            assert response.status_code == 200, response.text
            page = response.json()["messages"]
            if not page:
                return records
            records += page
            after = page[-1]["id"]


def test_oru_over_mllp_to_the_running_server_then_read_over_http(tmp_path, database_url):
    facility = f"县人民医院-{uuid.uuid4().hex[:6]}"
    mllp_port = _free_port()
    with running_server(tmp_path, database_url, "--mllp-port", str(mllp_port)) as server:
        client_id, secret = register_client(tmp_path, database_url)
        token = access_token(server.base, client_id, secret)
        with MllpClient("127.0.0.1", mllp_port) as mllp:
            acks = [mllp.send(oru_bytes(f"E2E-{n}-{facility}", sender=("LIS", facility), patient=500 + n))
                    for n in range(3)]
            assert [msa(a)[1] for a in acks] == ["AA", "AA", "AA"]
            assert mllp.send(oru_bytes(f"E2E-0-{facility}", sender=("LIS", facility), patient=500)) == acks[0]

        with http_client(server.base, token) as http:
            [report] = search(http, "/DiagnosticReport", identifier=f"LABE2E-1-{facility}")
            assert report["status"] == "final"
            assert len(report["result"]) == len(RESULTS)
            observations = [http.get(f"/{r['reference']}").json() for r in report["result"]]
            by_code = {c["code"]: o for o in observations for c in o["code"]["coding"]}
            glucose = by_code["14771-0"]  # GLU mapped to LOINC, the local coding kept beside it
            assert glucose["valueQuantity"]["value"] == 7.8
            assert "GLU" in by_code
            patient = http.get(f"/{report['subject']['reference']}").json()
            assert patient["name"][0].get("family") == "王" or "王" in str(patient["name"])
            provenances = search(http, "/Provenance", target=f"DiagnosticReport/{report['id']}")
            assert len(provenances) == 1
            assert provenances[0]["entity"][0]["what"]["identifier"]["value"] == f"LIS|{facility}|E2E-1-{facility}"

        records = inbound(server.base, token, sender=f"LIS|{facility}")
        assert [r["status"] for r in records] == ["processed", "processed", "processed", "duplicate"]


# -- the kill test ----------------------------------------------------------------------------------

class Stream(threading.Thread):
    """One sender streaming ORU^R01 messages over one MLLP connection until told to stop or the
    connection dies; remembers what it sent and which control ids were ACKed AA."""

    def __init__(self, port: int, number: int, run: str):
        super().__init__(daemon=True)
        self.port, self.number, self.run_id = port, number, run
        self.facility = f"镇卫生院{number}-{run}"
        self.sent: dict[str, bytes] = {}
        self.acked: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            with MllpClient("127.0.0.1", self.port, timeout=60) as client:
                n = 0
                while not self.stop.is_set():
                    control_id = f"K{self.number}-{self.run_id}-{n:04d}"
                    raw = oru_bytes(control_id, sender=("LIS", self.facility), patient=self.number * 97 + n)
                    self.sent[control_id] = raw
                    ack = client.send(raw)
                    assert msa(ack)[1:3] == ["AA", control_id]
                    self.acked.append(control_id)
                    n += 1
        except (ConnectionError, OSError):
            pass  # the server was killed


@pytest.mark.parametrize("workers", ["1", "2"])
def test_killing_the_server_mid_stream_loses_no_acked_message_and_half_writes_none(tmp_path, database_url, workers):
    run = uuid.uuid4().hex[:6]
    mllp_port = _free_port()
    options = ("--mllp-port", str(mllp_port), "--workers", workers)
    with running_server(tmp_path, database_url, *options) as server:
        streams = [Stream(mllp_port, i, run) for i in range(4)]
        for s in streams:
            s.start()
        deadline = time.monotonic() + 120
        while sum(len(s.acked) for s in streams) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in [*children_of(server.process.pid), server.process.pid]:  # mid-stream: messages in flight
            os.kill(pid, signal.SIGKILL)
        server.process.wait(timeout=30)
        for s in streams:
            s.stop.set()
            s.join(timeout=60)
    acked = [c for s in streams for c in s.acked]
    sent = {c: raw for s in streams for c, raw in s.sent.items()}
    assert len(acked) >= 40
    in_flight = [c for c in sent if c not in set(acked)]
    assert in_flight  # killed with messages in hand, not between them

    with running_server(tmp_path, database_url, *options) as server:
        client_id, secret = register_client(tmp_path, database_url)
        token = access_token(server.base, client_id, secret)
        records = {}
        for s in streams:
            for record in inbound(server.base, token, sender=f"LIS|{s.facility}"):
                assert record["status"] in ("processed", "received"), record
                records[record["controlId"]] = record
        # every ACKed message is stored and processed, with all its resources
        assert all(records[c]["status"] == "processed" for c in acked)
        with http_client(server.base, token) as http:
            for control_id in sent:
                reports = search(http, "/DiagnosticReport", identifier=f"LAB{control_id}")
                record = records.get(control_id)
                if record is None or record["status"] != "processed":
                    assert reports == [], f"{control_id} was not committed but its report exists"
                    continue
                [report] = reports
                assert len(report["result"]) == len(RESULTS)  # no report without all its results
                for reference in record["resources"]:
                    rtype, rid = reference.split("/")[:2]
                    assert http.get(f"/{rtype}/{rid}").status_code == 200, reference
                assert len(search(http, "/Provenance", target=f"DiagnosticReport/{report['id']}")) == 1

        # the senders resend what they got no ACK for: each is applied once, nothing twice
        resent = in_flight + acked[:3]
        # killed after a commit but before its ACK left: stored, and a duplicate when resent
        committed_unacked = [c for c in in_flight if records.get(c, {}).get("status") == "processed"]
        with MllpClient("127.0.0.1", mllp_port) as client:
            for control_id in resent:
                assert msa(client.send(sent[control_id]))[1:3] == ["AA", control_id]
        with http_client(server.base, token) as http:
            for control_id in resent:
                [report] = search(http, "/DiagnosticReport", identifier=f"LAB{control_id}")
                assert len(report["result"]) == len(RESULTS)
        statuses = [r["status"] for s in streams for r in inbound(server.base, token, sender=f"LIS|{s.facility}")]
        assert statuses.count("processed") == len(sent)
        assert statuses.count("duplicate") == 3 + len(committed_unacked)


def test_every_worker_takes_mllp_connections_and_a_sender_on_two_of_them_is_applied_whole(tmp_path, database_url):
    """``serve --workers 2 --mllp-port P``: MLLP connections are shared between the workers like
    HTTP ones, and two connections of one sender, on different workers, are applied one message
    at a time (the sender's lock is held across processes): every message is processed once,
    with its patient created once though both connections name the same patients."""
    run = uuid.uuid4().hex[:6]
    mllp_port = _free_port()
    with running_server(tmp_path, database_url, "--workers", "2", "--mllp-port", str(mllp_port)) as server:
        serving, deadline, probes = set(), time.monotonic() + 60, 0
        while len(serving) < 2 and time.monotonic() < deadline:  # until both workers take connections
            with MllpClient("127.0.0.1", mllp_port) as probe:
                assert msa(probe.send(oru_bytes(f"P{probes}-{run}", sender=("LIS", f"探针-{run}"),
                                                 patient=900 + probes)))[1] == "AA"
                serving |= set(_connections_per_process(server.process.pid, mllp_port))
            probes += 1
        assert len(serving) == 2, "the second worker never took an MLLP connection"

        facility = f"县人民医院-{run}"
        clients = [MllpClient("127.0.0.1", mllp_port, timeout=60) for _ in range(4)]
        acks: list[list[str]] = []

        def send(client: MllpClient, number: int) -> None:
            for n in range(10):  # each message's patient is sent by both connections of its sender
                sender = facility if number % 2 == 0 else f"{facility}-2"
                control_id = f"W{number}-{n}-{run}"
                acks.append(msa(client.send(oru_bytes(control_id, sender=("LIS", sender), patient=700 + n)))[1:3])

        threads = [threading.Thread(target=send, args=(c, i)) for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        per_worker = _connections_per_process(server.process.pid, mllp_port)
        for c in clients:
            c.close()
        # both workers hold some (two each when none is slow to accept: see the HTTP test)
        assert len(per_worker) == 2 and sum(per_worker.values()) == 4, per_worker
        assert len(acks) == 40 and all(code == "AA" for code, _ in acks), acks

        client_id, secret = register_client(tmp_path, database_url)
        token = access_token(server.base, client_id, secret)
        statuses = [r["status"] for sender in (facility, f"{facility}-2")
                    for r in inbound(server.base, token, sender=f"LIS|{sender}")]
        assert statuses == ["processed"] * 40
        with http_client(server.base, token) as http:
            for number in range(4):
                [report] = search(http, "/DiagnosticReport", identifier=f"LABW{number}-3-{run}")
                assert len(report["result"]) == len(RESULTS)
            for n in range(10):  # the same patient sent on two workers at once: one Patient
                [patient] = search(http, "/Patient", identifier=f"{RESIDENT_ID}|{resident_id(700 + n)}")
                subjects = {search(http, "/DiagnosticReport", identifier=f"LABW{number}-{n}-{run}")[0]["subject"][
                    "reference"] for number in range(4)}
                assert subjects == {f"Patient/{patient['id']}"}


def test_the_standalone_mllp_listener_command(tmp_path, database_url):
    import subprocess

    from test_server_process import _process_env

    port = _free_port()
    facility = f"县人民医院-{uuid.uuid4().hex[:6]}"
    log_path = tmp_path / "mllp.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fhir_server", "mllp", "--host", "127.0.0.1", "--port", str(port),
             "--database-url", database_url], cwd=tmp_path, env=_process_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                client = MllpClient("127.0.0.1", port)
                break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")
                time.sleep(0.25)
        with client:
            ack = client.send(oru_bytes(f"ALONE-{facility}", sender=("LIS", facility), patient=77))
            assert msa(ack)[1:3] == ["AA", f"ALONE-{facility}"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text(errors="replace")
