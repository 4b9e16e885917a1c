"""ORU^R01 and OUL^R21/R22/R24 -> DiagnosticReport, Observation, Specimen, performing lab.

The message is walked segment by segment (the groups of the four structures differ, the
segments do not): PID starts a patient, a PV1 after it names the visit (an Encounter, keyed on
PV1-19, that the patient's reports and results point at), ORC and OBR an order (one DiagnosticReport), OBX a
result of the current order, NTE a note on the last OBX (else on the order), SPM a specimen
(of the current order; in OUL^R22, where SPM comes first, of the orders that follow it).

Every resource is written by a conditional interaction keyed on the sender's numbers, so a
redelivered or corrected message updates instead of duplicating:
Observation ``filler order number + OBX-3 (+ OBX-4)``, DiagnosticReport the filler order
number (OBR-3, else ORC-3, else the placer number), Specimen SPM-2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.hl7v2 import laboratory_values
from adapters.hl7v2.context import MappingContext
from adapters.hl7v2.datatypes import DATATYPE_MAPS, date_time_value, datatype_map, to_instant
from adapters.hl7v2.laboratory_values import LOINC, lab_code
from adapters.hl7v2.organizations import performing_organization, sending_organization
from adapters.hl7v2.parsing import Segment, V2Message
from adapters.hl7v2.patients import encounter_from_pv1, patient_reference
from adapters.hl7v2.segment_map import apply_segment_map
from adapters.hl7v2.transaction import TransactionBuilder, identifier_criteria
from fhir_server.auth.identity import SYSTEM
from fhir_server.errors import FhirError

__all__ = ["laboratory_report", "Order", "write_order"]

LOCAL = "https://county-fhir.example.org/fhir/StructureDefinition"
COUNTY_LAB_RESULT = f"{LOCAL}/county-lab-result"
COUNTY_DIAGNOSTIC_REPORT = f"{LOCAL}/county-diagnostic-report"
LAB_CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory", "display": "Laboratory"}]}
LAB_SECTION = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB",
                           "display": "Laboratory"}]}
_REPORT_FALLBACK_DISPLAY = {"11502-2": "Laboratory report"}
_CORRECTING = ("corrected", "amended", "entered-in-error")

assert laboratory_values  # the OBX datatype maps register on import


@datatype_map("LabCode")
def _lab_code(segment: Segment, field_: int, context: MappingContext, vocabulary: str) -> dict | None:
    return lab_code(segment, field_, context)[0]


@datatype_map("ReportCode")
def _report_code(segment: Segment, field_: int, context: MappingContext, vocabulary: str) -> dict | None:
    """OBR-4: LOINC when the ConceptMaps know the code, else the sender's fallback LOINC first."""
    fallback = context.setting("report_code_fallback")
    quiet = MappingContext(context.header, context.server, [], context.tables, context.organization)
    concept, has_loinc = lab_code(segment, field_, quiet if fallback else context)
    if concept is None:
        concept = {}
    if not has_loinc and fallback:
        concept.setdefault("coding", []).insert(0, {"system": LOINC, "code": fallback,
                                                    **({"display": _REPORT_FALLBACK_DISPLAY[fallback]}
                                                       if fallback in _REPORT_FALLBACK_DISPLAY else {})})
    return concept or None


@dataclass
class Order:
    obr: Segment
    orc: Segment | None
    subject: dict | None
    encounter: dict | None = None  # the visit of the patient group's PV1, when it names one
    specimens: list[dict] = field(default_factory=list)  # references
    results: list[tuple[Segment, list[Segment]]] = field(default_factory=list)  # OBX and its NTEs
    notes: list[Segment] = field(default_factory=list)


def laboratory_report(message: V2Message, context: MappingContext, builder: TransactionBuilder) -> None:
    msh = message.segments[0]
    context.organization = sending_organization(context, builder, msh)
    specimen_first = context.header.message_type == "OUL^R22"
    subject: dict | None = None
    encounter: dict | None = None
    order: Order | None = None
    pending_orc: Segment | None = None
    group_specimens: list[dict] = []
    seen: set[tuple] = set()
    for segment in message.segments[1:]:
        if segment.id in ("OBX", "NTE", "PID") and _repeated(segment, seen, context):
            continue
        if segment.id == "PID":
            _finish(order, context, builder)
            order, pending_orc, group_specimens, encounter = None, None, [], None
            subject = patient_reference(segment, context, builder)
        elif segment.id == "PV1" and subject is not None and order is None:
            encounter = encounter_from_pv1(segment, subject, context, builder)
        elif segment.id == "ORC":
            pending_orc = segment
        elif segment.id == "OBR":
            _finish(order, context, builder)
            order = Order(segment, pending_orc, subject, encounter, list(group_specimens))
            pending_orc = None
        elif segment.id == "SPM":
            reference = _specimen(segment, subject, order, context, builder)
            if specimen_first:
                if order is not None:
                    _finish(order, context, builder)
                    order = None
                group_specimens = [reference] if reference else []
            elif order is not None and reference:
                order.specimens.append(reference)
            elif reference:
                group_specimens.append(reference)
        elif segment.id == "OBX":
            if order is None:
                context.warn(segment, None, "100", "OBX outside an order (before any OBR) is not mapped")
                continue
            order.results.append((segment, []))
        elif segment.id == "NTE":
            if order is not None and order.results:
                order.results[-1][1].append(segment)
            elif order is not None:
                order.notes.append(segment)
    _finish(order, context, builder)
    if not any(e["resource"]["resourceType"] == "DiagnosticReport" for e in builder.entries) and \
            not any(p.severity == "E" for p in context.problems):
        context.problem("OBR", None, "101", "E", "The message has no OBR (order) with results")


def _repeated(segment: Segment, seen: set[tuple], context: MappingContext) -> bool:
    """An exactly repeated segment (tolerance ``duplicate_segments``) is dropped with a warning."""
    if context.setting("duplicate_segments") not in ("warn", "drop"):
        return False
    key = (segment.id, repr(segment.fields[2:]) if segment.id in ("OBX", "NTE") else repr(segment.fields[1:]))
    if key in seen:
        context.warn(segment, None, "100", f"{segment.id} repeats an earlier {segment.id} exactly; dropped")
        return True
    seen.add(key)
    return False


def _specimen(spm: Segment, subject: dict | None, order: Order | None, context: MappingContext,
              builder: TransactionBuilder) -> dict | None:
    specimen = apply_segment_map("SPM.Specimen", spm, context, {"resourceType": "Specimen"})
    if not specimen.get("identifier"):
        context.warn(spm, 2, "101", "SPM-2 (specimen id) is empty: the specimen is not written")
        return None
    if subject:
        specimen["subject"] = subject
    full_url = builder.add(specimen, "PUT", f"Specimen?{identifier_criteria(specimen['identifier'][0])}")
    return {"reference": full_url}


def _finish(order: Order | None, context: MappingContext, builder: TransactionBuilder) -> None:
    if order is None:
        return
    write_order(order, context, builder)


def order_identifiers(order: Order, context: MappingContext) -> tuple[list[dict], dict | None]:
    """The report's identifiers (placer, filler) and the filler number results are keyed on."""
    identifiers = []
    for segment, placer_field, filler_field in ((order.obr, 2, 3), (order.orc, 2, 3)):
        if segment is None:
            continue
        for field_, kind in ((placer_field, "EI[Identifier-PLAC]"), (filler_field, "EI[Identifier-FILL]")):
            identifier = DATATYPE_MAPS[kind](segment, field_, context, "")
            if identifier and all(i["value"] != identifier["value"] or i["system"] != identifier["system"]
                                  for i in identifiers):
                identifiers.append(identifier)
    filler = next((i for i in identifiers if i["type"]["coding"][0]["code"] == "FILL"), None)
    return identifiers, filler or (identifiers[0] if identifiers else None)


def write_order(order: Order, context: MappingContext, builder: TransactionBuilder,
                report: bool = True) -> list[dict]:
    """Observations of one order (and its DiagnosticReport when ``report``); their references."""
    obr = order.obr
    identifiers, key = order_identifiers(order, context)
    if key is None:
        context.problem(obr, 3, "101", "E", "OBR-3 (filler order number), ORC-3 and OBR-2 are all empty: the "
                        "results cannot be identified (a correction could not replace them)")
        return []
    if order.subject is None:
        if not any(p.severity == "E" for p in context.problems):
            context.problem("PID", None, "101", "E", "The results name no patient (no PID before the OBR)")
        return []
    msh_time = to_instant(context.header_time, context) if context.header_time else None
    order_time = date_time_value(obr, 7, context)
    order_issued = DATATYPE_MAPS["TS[instant]"](obr, 22, context, "") or msh_time
    sender = context.organization
    if not order.specimens and obr.valued(15):
        specimen = apply_segment_map("OBR.Specimen", obr, context, {"resourceType": "Specimen"})
        specimen["identifier"] = [{"system": f"{key['system']}/specimen", "value": key["value"]}]
        specimen["subject"] = order.subject
        order.specimens.append({"reference": builder.add(
            specimen, "PUT", f"Specimen?{identifier_criteria(specimen['identifier'][0])}")})
    references = []
    for obx, notes in order.results:
        observation = _observation(obx, notes, order, key, context, builder, sender, order_time, order_issued)
        if observation is not None:
            references.append(observation)
    if not report or not references:
        if report and not references and not any(p.severity == "E" for p in context.problems):
            context.warn(obr, None, "100", "OBR without results (OBX): no DiagnosticReport is written")
        return references
    report_resource: dict = {"resourceType": "DiagnosticReport", "category": [LAB_SECTION]}
    apply_segment_map("OBR.DiagnosticReport", obr, context, report_resource)
    report_resource["identifier"] = identifiers
    report_resource["subject"] = order.subject
    if order.encounter:
        report_resource["encounter"] = order.encounter
    report_resource.setdefault("effectiveDateTime", order_time or _first_effective(builder, references) or msh_time)
    report_resource.setdefault("issued", order_issued)
    report_resource["performer"] = [{"reference": sender["reference"]}]
    report_resource["result"] = [{"reference": r["reference"]} for r in references]
    if any(builder.resource(r["reference"])["status"] in _CORRECTING for r in references):
        report_resource["result"] += _results_not_resent(context, key, builder, references)
    if order.specimens:
        report_resource["specimen"] = order.specimens
    conclusion = "\n".join(filter(None, (DATATYPE_MAPS["FT[string]"](n, 3, context, "") for n in order.notes)))
    if conclusion:
        report_resource["conclusion"] = conclusion
    if not report_resource.get("status"):
        report_resource["status"] = "final"
    if _has_loinc(report_resource) and report_resource.get("effectiveDateTime") and report_resource.get("issued"):
        report_resource["meta"] = {"profile": [COUNTY_DIAGNOSTIC_REPORT]}
    builder.add(report_resource, "PUT", f"DiagnosticReport?{identifier_criteria(key)}")
    return references


def _observation(obx: Segment, notes: list[Segment], order: Order, key: dict, context: MappingContext,
                 builder: TransactionBuilder, sender: dict, order_time: str | None, order_issued: str | None
                 ) -> dict | None:
    problems_before = len(context.problems)
    observation: dict = {"resourceType": "Observation", "status": "final", "category": [LAB_CATEGORY]}
    apply_segment_map("OBX.Observation", obx, context, observation)
    if any(p.severity == "E" for p in context.problems[problems_before:]):
        return None
    code = observation.get("code")
    if not code:
        context.problem(obx, 3, "101", "E", "OBX-3 (observation identifier) is empty")
        return None
    local = next((c["code"] for c in code.get("coding", []) if c["system"] != LOINC), None) or \
        code["coding"][0]["code"] if code.get("coding") else code.get("text", "")
    sub_id = obx.get(4).strip()
    observation["identifier"] = [{"system": f"{key['system']}/observation",
                                  "value": f"{key['value']}-{local}" + (f"-{sub_id}" if sub_id else "")}]
    observation["subject"] = order.subject
    if order.encounter:
        observation["encounter"] = order.encounter
    lab = performing_organization(context, builder, obx, sender)
    observation["performer"] = [{"reference": lab["reference"]}, *observation.get("performer", [])]
    if order.specimens:
        observation["specimen"] = {"reference": order.specimens[0]["reference"]}
    if "effectiveDateTime" not in observation and order_time:
        observation["effectiveDateTime"] = order_time
    if "issued" not in observation and order_issued:
        observation["issued"] = order_issued
    for note in notes:
        observation.setdefault("note", []).extend(DATATYPE_MAPS["FT[Annotation]"](note, 3, context, "") or [])
    if _fits_lab_result(observation):
        observation["meta"] = {"profile": [COUNTY_LAB_RESULT]}
    full_url = builder.add(observation, "PUT", f"Observation?{identifier_criteria(observation['identifier'][0])}")
    return {"reference": full_url}


def _results_not_resent(context: MappingContext, key: dict, builder: TransactionBuilder,
                        references: list[dict]) -> list[dict]:
    """A correction may resend only the corrected OBX: the stored report's other results stay listed.

    Read only for messages that correct something (a store read per corrected order).
    """
    server = context.server
    if server is None:
        return []
    resent = {builder.resource(r["reference"])["identifier"][0]["value"] for r in references}
    kept = []
    with server.db.read() as conn:
        ids = server.search.find_ids(conn, "DiagnosticReport", [("identifier", f"{key['system']}|{key['value']}")],
                                     SYSTEM)
        for report_id in ids[:1]:
            report = server.resources.read("DiagnosticReport", report_id, conn, identity=SYSTEM)
            for result in report.get("result", []):
                observation_id = result.get("reference", "").split("/", 1)[-1]
                try:
                    observation = server.resources.read("Observation", observation_id, conn, identity=SYSTEM)
                except FhirError:
                    continue
                if not {i.get("value") for i in observation.get("identifier", [])} & resent:
                    kept.append({"reference": result["reference"]})
    return kept


def _has_loinc(resource: dict) -> bool:
    return any(c.get("system") == LOINC for c in (resource.get("code") or {}).get("coding", []))


def _fits_lab_result(observation: dict) -> bool:
    quantity = observation.get("valueQuantity")
    return (_has_loinc(observation) and bool(observation.get("effectiveDateTime")) and bool(observation.get("issued"))
            and (quantity is None or ("code" in quantity and "system" in quantity)))


def _first_effective(builder: TransactionBuilder, references: list[dict]) -> str | None:
    for reference in references:
        moment = builder.resource(reference["reference"]).get("effectiveDateTime")
        if moment:
            return moment
    return None
