"""Replay: translate and write stored messages again, once their mapping or code table is fixed.

A message that failed (``error``: AE or an internal error; ``refused``: AR) or was never
finished (``received``: recovered from the spool of a process that stopped while it was in
hand) is kept in the inbound
store with its reason. After the fix (a row in ``mappings/``, a code in a ConceptMap),
``replay`` runs it through the pipeline again, from its stored bytes, in the order the
messages were received: on success its resources are written (with their Provenance) and
the record becomes ``processed`` with the new ACK, problems and resource ids; otherwise it
keeps its status with the new reason. Processed messages and duplicates are never replayed.

The mapping tables are read again before a replay. Terminology (the lab-code ConceptMaps) is
loaded when the server starts: after fixing a ConceptMap, restart the server (or replay with
the command, which starts afresh).

Used by ``python -m fhir_server hl7-replay`` and ``POST /hl7v2/inbound/{id}/$replay``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from adapters.hl7v2.inbound_store import REPLAYABLE
from adapters.hl7v2.pipeline import InboundPipeline, NotReplayable, Outcome
from adapters.hl7v2.spool import recover

__all__ = ["ReplayResult", "finish_interrupted", "replay_records", "replayable_ids"]


@dataclass
class ReplayResult:
    record_id: int
    outcome: Outcome | None  # None when the record could not be replayed (``reason`` says why)
    reason: str | None = None

    def to_json(self) -> dict:
        if self.outcome is None:
            return {"id": self.record_id, "replayed": False, "reason": self.reason}
        return {
            "id": self.record_id, "replayed": True, "status": self.outcome.status,
            "ackCode": self.outcome.ack_code, "resources": self.outcome.resources,
            "problems": [{"segment": p.segment, "sequence": p.sequence, "field": p.field,
                          "component": p.component, "code": p.code, "severity": p.severity, "text": p.text}
                         for p in self.outcome.problems],
        }


def replayable_ids(pipeline: InboundPipeline, *, statuses: Iterable[str] = ("error", "refused"),
                   sender: str | None = None, limit: int = 10_000) -> list[int]:
    """The records in ``statuses`` (replayable ones only), oldest first."""
    wanted = [s for s in statuses if s in REPLAYABLE]
    return [r.id for r in pipeline.store.find(status=wanted, sender=sender, limit=limit)]


def reload_mapping_tables() -> None:
    """Read ``mappings/hl7v2/`` again, so that a replay in a running server sees the fixed table."""
    from adapters.hl7v2.mapping_tables import tables

    tables.cache_clear()


def replay_records(pipeline: InboundPipeline, record_ids: Iterable[int]) -> list[ReplayResult]:
    """Replay each record, in the order received (ascending id), with the mapping tables as they
    are now on disk."""
    reload_mapping_tables()
    results = []
    for record_id in sorted(set(record_ids)):
        try:
            results.append(ReplayResult(record_id, pipeline.replay(record_id)))
        except NotReplayable as exc:
            results.append(ReplayResult(record_id, None, str(exc)))
    return results


def finish_interrupted(pipeline: InboundPipeline) -> list[ReplayResult]:
    """Write the messages stopped processes received but never finished, oldest first: first
    their spooled deliveries without a row become ``received`` rows (``spool.recover``), then
    every ``received`` row is replayed. The MLLP listener runs this before it accepts
    connections, so that they go in ahead of what their senders send next; a sender that
    resends one then gets the first ACK again (a duplicate).

    A live process keeps a new message it has in hand in its own spool (locked), not in a
    ``received`` row; a ``received`` row it took up for a resend is in hand under the sender's
    turn, which the replay waits for (and then finds the row finished).
    """
    recover(pipeline.spool.directory, pipeline.store)
    left = [r.id for r in pipeline.store.find(status="received", limit=100_000)]
    return replay_records(pipeline, left) if left else []
