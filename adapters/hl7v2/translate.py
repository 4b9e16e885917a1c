"""HL7 v2 message -> FHIR transaction Bundle: the two names the inbound pipeline calls.

``read_header(raw)`` reads MSH (raises ``MessageUnreadable`` when there is none);
``translate(raw, server)`` returns a ``Translation`` (contract.py):

- a sender whose ``accepted`` setting (``mappings/hl7v2/senders.csv``) is not ``yes`` is refused
  (AR, 103 at MSH-3);
- the message type is looked up in ``mappings/hl7v2/messages.csv``: an unknown message code
  is refused (AR, 200), a known code with an event not listed too (AR, 201);
- the handler maps the segments into a transaction Bundle (every entry with a ``urn:uuid``
  fullUrl); any error Problem (a field that cannot be understood) makes it AE with no Bundle;
  warnings (an unmapped lab code, an unknown flag...) go with AA;
- ``server`` gives the terminology (local lab codes -> LOINC) and the store, read to find the
  patient a message names (resident ID, then MRN, following merges). It may be None: the
  patient is then always a conditional create and codes are not translated.
"""

from __future__ import annotations

from adapters.hl7v2 import laboratory, patients, referral
from adapters.hl7v2.context import MappingContext
from adapters.hl7v2.contract import Header, MessageUnreadable, Translation
from adapters.hl7v2.header import decode_with_header
from adapters.hl7v2.organizations import sending_organization
from adapters.hl7v2.parsing import V2Message, parser_named
from adapters.hl7v2.transaction import TransactionBuilder

__all__ = ["read_header", "translate", "MessageUnreadable", "HANDLERS"]


def read_header(raw: bytes) -> Header:
    """The MSH fields of ``raw``, decoded in the sender's character set."""
    return decode_with_header(raw)[0]


def translate(raw: bytes, server, parser: str = "split") -> Translation:
    header, decoded = decode_with_header(raw)
    context = MappingContext(header, server)
    for note in decoded.notes:
        context.warn("MSH", 18 if "MSH-18" in note or "character set" in note else 2, "102", note)
    if not context.flag("accepted"):
        context.problem("MSH", 3, "103", "E",
                        f"{header.sending_application} at {header.sending_facility} is not an accepted sender "
                        "(mappings/hl7v2/senders.csv, setting 'accepted')")
        return Translation(header, "AR", None, context.problems)
    code, _, event = header.message_type.partition("^")
    handler_name = context.tables.handler(code, event)
    if handler_name is None:
        known = context.tables.knows_message_code(code)
        context.problem("MSH", 9, "201" if known else "200", "E",
                        f"Message type {header.message_type} is not supported "
                        f"({'event' if known else 'message code'} not in messages.csv)",
                        component=2 if known else 1)
        return Translation(header, "AR", None, context.problems)
    try:
        message = parser_named(parser).parse(decoded)
    except Exception as exc:  # noqa: BLE001 - the parser libraries raise their own kinds: the structure is unreadable
        context.problem("MSH", None, "100", "E", f"The message structure cannot be read: {type(exc).__name__}")
        return Translation(header, "AE", None, context.problems)
    context.header_time = message.segments[0].get(7)
    message.segments = [message.segments[0], *(s for s in message.segments[1:] if not _empty(s, context))]
    builder = TransactionBuilder()
    try:
        HANDLERS[handler_name](message, context, builder)
    except (IndexError, KeyError, ValueError, TypeError) as exc:
        context.problem("MSH", None, "207", "E", f"The message could not be mapped ({type(exc).__name__}: {exc})")
    if any(p.severity == "E" for p in context.problems):
        return Translation(header, "AE", None, context.problems)
    return Translation(header, "AA", builder.bundle(), context.problems)


def _empty(segment, context: MappingContext) -> bool:
    """A segment with nothing but its id and set id ("NTE|1|", "OBX|") is dropped, with a warning."""
    if any(segment.valued(n) for n in range(2, len(segment.fields))) or \
            (segment.valued(1) and segment.id not in ("NTE", "OBX", "OBR", "SPM", "DG1", "PID", "PV1", "ORC")):
        return False
    context.warn(segment, None, "100", f"{segment.id} segment is empty; ignored")
    return True


def _patient_administration(message: V2Message, context: MappingContext, builder: TransactionBuilder) -> None:
    context.organization = sending_organization(context, builder, message.segments[0])
    pid = _one(message, "PID", context)
    if pid is None:
        return
    subject = patients.upsert_patient(pid, context, builder)
    pv1 = message.first("PV1")
    if subject is not None and pv1 is not None:
        patients.encounter_from_pv1(pv1, subject, context, builder)


def _patient_merge(message: V2Message, context: MappingContext, builder: TransactionBuilder) -> None:
    context.organization = sending_organization(context, builder, message.segments[0])
    pid = _one(message, "PID", context)
    mrg = message.first("MRG")
    if mrg is None:
        context.problem("MRG", None, "100", "E", "ADT^A40 without an MRG segment: nothing names the merged patient")
        return
    if pid is not None:
        patients.merge_patients(pid, mrg, context, builder)


def _one(message: V2Message, segment_id: str, context: MappingContext):
    found = message.all(segment_id)
    if not found:
        context.problem(segment_id, None, "100", "E", f"The message has no {segment_id} segment")
        return None
    if len(found) > 1 and any(s.fields != found[0].fields for s in found[1:]):
        context.warn(found[1], None, "100", f"{segment_id} is repeated with other content; the first is used")
    return found[0]


HANDLERS = {
    "patient_administration": _patient_administration,
    "patient_merge": _patient_merge,
    "laboratory_report": laboratory.laboratory_report,
    "referral": referral.referral,
}
