"""The urgent-finding rule for follow-ups that arrive through the FHIR API.

The import of public-health files and CDA documents applies the rule itself while it builds
a visit's resources. A follow-up another system records through the API (a transaction
Bundle, or an Encounter and Observations written one by one) gets the same treatment here:

* each Observation written is read as the import's export reads it (``read_observation``);
  only a blood pressure or glucose past a threshold goes further, so ordinary writes pay for
  one look at the Observation;
* just before that write commits, the Observation's Encounter is read. When it is a
  hypertension or diabetes follow-up, its whole record (``from_fhir``) is judged, and the
  urgent-referral ServiceRequest and Task are written in the same transaction, unless a
  referral of the patient already exists (the import's own, within the same transaction,
  counts). They commit or roll back with the follow-up.

The server's own in-process writers (``SYSTEM``: the file and CDA imports, which apply the
rule themselves, and the demo loader) are left alone.

A visit that cannot be judged (its patient has no resident ID or health-record number, say)
is logged and written all the same: the rule never refuses a follow-up.
"""

from __future__ import annotations

import logging
from functools import partial

from sqlalchemy import Connection

from adapters.public_health.follow_up_bundle import urgent_referral
from adapters.public_health.follow_up_record import HYPERTENSION, FollowUpRecord, RecordError
from adapters.public_health.from_fhir import from_fhir, kinds_of, read_observation
from adapters.public_health.urgent_referral import DEFAULT_THRESHOLDS, Thresholds, urgent_findings
from fhir_server.auth.access import acting
from fhir_server.auth.identity import SYSTEM
from fhir_server.errors import Gone, NotFound
from fhir_server.storage.engine import before_commit, transaction_state

__all__ = ["install"]

log = logging.getLogger(__name__)
_PENDING = "urgent_follow_ups"
_FINDING_KEY = {"urgent-blood-pressure": "bp", "urgent-glucose": "glucose"}


def install(server, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> None:
    """Apply the rule to every write of ``server`` from now on (once, however often called)."""
    if not any(getattr(hook, "func", None) is _noticed for hook in server.resources.on_change):
        server.resources.on_change.append(partial(_noticed, server, thresholds))


def _noticed(server, thresholds: Thresholds, conn: Connection, before: dict | None, after: dict | None) -> None:
    if after is None or after.get("resourceType") != "Observation" or acting(conn) is SYSTEM:
        return
    encounter = (after.get("encounter") or {}).get("reference", "")
    if not encounter.startswith("Encounter/"):
        return
    probe = FollowUpRecord(kind=HYPERTENSION)
    read_observation(probe, after)
    findings = urgent_findings(probe, thresholds)
    if not findings:
        return
    state = transaction_state(conn)
    if _PENDING not in state:
        state[_PENDING] = {}
        before_commit(conn).append(partial(_refer, server, thresholds, conn, state[_PENDING]))
    refs = state[_PENDING].setdefault(encounter, {})
    for finding in findings:
        refs[_FINDING_KEY[finding.reason]] = f"Observation/{after['id']}"


def _refer(server, thresholds: Thresholds, conn: Connection, pending: dict[str, dict[str, str]]) -> None:
    """Write the urgent referrals of the follow-ups this transaction made urgent."""
    for encounter_ref, observation_refs in pending.items():
        try:
            encounter = server.resources.read("Encounter", encounter_ref.split("/", 1)[1], conn, identity=SYSTEM)
        except (NotFound, Gone):
            continue
        for kind in kinds_of(encounter):
            try:
                record = from_fhir(server, encounter, kind, conn=conn)
                if not urgent_findings(record, thresholds):
                    continue
                if record.visit_date is None:
                    raise RecordError("the Encounter has no period.start (the visit date)")
                built = urgent_referral(server, conn, record, encounter_ref, observation_refs,
                                        thresholds=thresholds)
            except (RecordError, LookupError) as exc:
                log.warning("urgent finding in %s, but no referral can be written: %s", encounter_ref, exc)
                continue
            for entry in built.bundle["entry"]:
                resource = entry["resource"]
                server.resources.update(resource["resourceType"], resource["id"], resource, conn=conn,
                                        identity=SYSTEM)
            for note in built.notes:
                log.info("%s: %s", encounter_ref, note)
    server.store.flush(conn)  # the store's own flush ran before this callback
