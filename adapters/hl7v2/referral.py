"""REF^I12 -> ServiceRequest (the referral) + Task (its handling), Conditions, carried results.

- RF1: status (referral-status.csv), direction (RF1-3 through referral-direction.csv, else the
  sender's ``referral_direction``), reason (RF1-10 through referral-reason.csv), dates and the
  referral numbers (RF1-6 originating, RF1-11 external) that make redelivery an update.
- PRD: ``RP`` referring provider -> requester, ``RT`` referred-to provider -> performer and Task
  owner; each an institution by PRD-7.1 (unified social credit code) and PRD-2.1 (name).
  Without PRD RP the sender is the requester; without PRD RT the receiving facility (MSH-6).
- DG1 -> Condition (reasonReference, and their codes in reasonCode when RF1-10 is empty).
- OBR/OBX -> the same DiagnosticReport and Observations as ORU (supportingInfo).
- NTE outside an order -> ServiceRequest.note (initial impression, history, treatment so far).
"""

from __future__ import annotations

from adapters.hl7v2.context import MappingContext
from adapters.hl7v2.datatypes import DATATYPE_MAPS, codeable_concept, datatype_map, entity_identifier
from adapters.hl7v2.laboratory import Order, write_order
from adapters.hl7v2.organizations import organization_by_code, sending_organization
from adapters.hl7v2.parsing import Segment, V2Message
from adapters.hl7v2.patients import patient_reference
from adapters.hl7v2.segment_map import apply_segment_map
from adapters.hl7v2.transaction import TransactionBuilder, identifier_criteria

__all__ = ["referral"]

BASE = "https://county-fhir.example.org/fhir"
DIRECTION_EXTENSION = f"{BASE}/StructureDefinition/referral-direction"
DIRECTION_SYSTEM = f"{BASE}/CodeSystem/referral-direction"
REASON_SYSTEM = f"{BASE}/CodeSystem/referral-reason"
COUNTY_REFERRAL_REQUEST = f"{BASE}/StructureDefinition/county-referral-request"
COUNTY_REFERRAL_TASK = f"{BASE}/StructureDefinition/county-referral-task"
REFERRAL_CATEGORY = {"coding": [{"system": "http://snomed.info/sct", "code": "3457005",
                                 "display": "Patient referral"}], "text": "转诊"}
_PRIORITY = {"S": "stat", "A": "asap", "R": "routine", "U": "urgent"}


@datatype_map("ReferralPriority")
def _priority(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> str | None:
    return _PRIORITY.get(segment.get(field).strip().upper())


@datatype_map("ReferralReason")
def _reason(segment: Segment, field: int, context: MappingContext, vocabulary: str) -> list[dict] | None:
    reasons = []
    for repetition in range(1, len(segment.fields[field]) + 1 if field < len(segment.fields) else 1):
        sent_code = segment.get(field, 1, repetition=repetition).strip()
        text = segment.get(field, 2, repetition=repetition).strip() or sent_code
        row = next((context.lookup("referral-reason", v) for v in (sent_code, text) if v
                    and context.lookup("referral-reason", v)), None)
        if row:
            reasons.append({"coding": [{"system": REASON_SYSTEM, "code": row["reason"]}], "text": text})
        elif text:
            reasons.append({"text": text})
    return reasons or None


def referral(message: V2Message, context: MappingContext, builder: TransactionBuilder) -> None:
    msh = message.segments[0]
    context.organization = sending_organization(context, builder, msh)
    rf1, pid = message.first("RF1"), message.first("PID")
    if rf1 is None or pid is None:
        context.problem("RF1" if rf1 is None else "PID", None, "100", "E", "REF^I12 needs an RF1 and a PID segment")
        return
    subject = patient_reference(pid, context, builder)
    if subject is None:
        return
    requester, performer = _providers(message, context, builder)
    request = apply_segment_map("RF1.ServiceRequest", rf1, context, {"resourceType": "ServiceRequest"})
    key = next(iter(request.get("identifier", [])), None)
    if key is None:
        context.problem(rf1, 6, "101", "E", "RF1-6 and RF1-11 (the referral numbers) are empty: the referral "
                        "cannot be identified")
        return
    status = context.lookup("referral-status", rf1.get(1).strip()) or context.lookup("referral-status", "")
    direction = _direction(rf1, context)
    request.update({"status": status["service_request_status"], "intent": "order", "category": [REFERRAL_CATEGORY],
                    "subject": subject, "requester": requester, "performer": [performer]})
    request.setdefault("authoredOn", DATATYPE_MAPS["TS[dateTime]"](msh, 7, context, ""))
    if direction:
        request["extension"] = [{"url": DIRECTION_EXTENSION, "valueCoding": {"system": DIRECTION_SYSTEM,
                                                                            "code": direction}}]
    referral_type = codeable_concept(rf1, 3, context)
    if referral_type and referral_type.get("text"):
        request["code"] = {"text": referral_type["text"]}
    conditions = _conditions(message, subject, key, context, builder)
    if conditions:
        request["reasonReference"] = [{"reference": r} for r, _ in conditions]
        if not request.get("reasonCode"):
            request["reasonCode"] = [code for _, code in conditions]
    results = _carried_results(message, subject, context, builder)
    if results:
        request["supportingInfo"] = results
    notes = [DATATYPE_MAPS["FT[string]"](n, 3, context, "") for n in _notes_outside_orders(message)]
    if any(notes):
        request["note"] = [{"text": n} for n in notes if n]
    if direction and request.get("reasonCode") and request.get("authoredOn"):
        request["meta"] = {"profile": [COUNTY_REFERRAL_REQUEST]}
    elif not direction:
        context.warn(rf1, 3, "103", "The referral's direction (RF1-3) is not in referral-direction.csv and the "
                     "sender has no referral_direction: stored without the county referral profile")
    request_url = builder.add(request, "PUT", f"ServiceRequest?{identifier_criteria(key)}")
    task_identifier = {"system": f"{key['system']}/task", "value": key["value"]}
    task = {"resourceType": "Task", "identifier": [task_identifier], "status": status["task_status"],
            "intent": "order", "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code",
                                                    "code": "fulfill"}]},
            "basedOn": [{"reference": request_url}], "focus": {"reference": request_url}, "for": subject,
            "authoredOn": request["authoredOn"], "requester": requester, "owner": performer}
    if direction:
        task["extension"] = request["extension"]
    if request.get("authoredOn"):
        task["meta"] = {"profile": [COUNTY_REFERRAL_TASK]}
    builder.add(task, "PUT", f"Task?{identifier_criteria(task_identifier)}")


def _direction(rf1: Segment, context: MappingContext) -> str | None:
    for value in (rf1.get(3, 1).strip(), rf1.get(3, 2).strip()):
        row = context.lookup("referral-direction", value) if value else None
        if row:
            return row["direction"]
    return context.setting("referral_direction") or None


def _providers(message: V2Message, context: MappingContext, builder: TransactionBuilder) -> tuple[dict, dict]:
    by_role: dict[str, dict] = {}
    for prd in message.all("PRD"):
        role = prd.get(1, 1).strip().upper()
        name = prd.get(2, 1).strip() or prd.get(4, 1).strip()
        code = prd.get(7, 1).strip() or None
        if role in ("RP", "RT") and role not in by_role and (name or code):
            reference = organization_by_code(context, builder, name, code)
            by_role[role] = {"reference": reference["reference"]}
    requester = by_role.get("RP") or {"reference": context.organization["reference"]}
    if "RT" in by_role:
        return requester, by_role["RT"]
    msh = message.segments[0]
    receiving = organization_by_code(context, builder, msh.get(6, 1).strip() or context.header.receiving_facility,
                                     msh.get(6, 2).strip() or None)
    return requester, {"reference": receiving["reference"]}


def _conditions(message: V2Message, subject: dict, key: dict, context: MappingContext,
                builder: TransactionBuilder) -> list[tuple[str, dict]]:
    found = []
    for dg1 in message.all("DG1"):
        condition = apply_segment_map("DG1.Condition", dg1, context, {"resourceType": "Condition"})
        if "code" not in condition:
            context.warn(dg1, 3, "101", "DG1-3 (diagnosis code) is empty: the diagnosis is not written")
            continue
        identifier = {"system": f"{key['system']}/diagnosis", "value": f"{key['value']}-{dg1.get(1).strip() or dg1.sequence}"}
        condition.update({
            "identifier": [identifier], "subject": subject,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "provisional" if dg1.get(6).strip().upper() in ("A", "W") else "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "encounter-diagnosis"}]}],
        })
        asserter = condition.pop("asserter", None)
        if asserter:
            condition["asserter"] = asserter
        full_url = builder.add(condition, "PUT", f"Condition?{identifier_criteria(identifier)}")
        found.append((full_url, condition["code"]))
    return found


def _carried_results(message: V2Message, subject: dict, context: MappingContext,
                     builder: TransactionBuilder) -> list[dict]:
    references: list[dict] = []
    order: Order | None = None
    pending_orc = None
    for segment in message.segments:
        if segment.id == "ORC":
            pending_orc = segment
        elif segment.id == "OBR":
            if order is not None:
                references += write_order(order, context, builder)
            order, pending_orc = Order(segment, pending_orc, subject), None
        elif segment.id == "OBX" and order is not None:
            order.results.append((segment, []))
        elif segment.id == "NTE" and order is not None and order.results:
            order.results[-1][1].append(segment)
    if order is not None:
        references += write_order(order, context, builder)
    return [{"reference": r["reference"]} for r in references]


def _notes_outside_orders(message: V2Message) -> list[Segment]:
    notes, in_order = [], False
    for segment in message.segments:
        if segment.id == "OBR":
            in_order = True
        elif segment.id in ("PV1", "PV2", "RF1", "PRD", "PID", "DG1"):
            in_order = False
        elif segment.id == "NTE" and not in_order:
            notes.append(segment)
    return notes


assert entity_identifier  # EI maps used through the RF1 segment map
