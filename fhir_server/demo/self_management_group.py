"""Self-management groups (慢性病患者自我管理小组): one in about a third of the villages.

A group belongs to one village, is guided by its township centre's guide doctor
(``Group.managingEntity``), and takes 15-20 managed patients of that village who have the
group's condition: hypertension (most groups), type 2 diabetes, or either ("慢性病").
Members are the first eligible residents generated, so a group with few eligible
residents in a small demo simply has fewer members.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from fhir_server.demo import codes
from fhir_server.demo.codes import DIABETES, HYPERTENSION
from fhir_server.demo.datatypes import concept, reference
from fhir_server.demo.network import Clinic, Network
from fhir_server.demo.parameters import CountyParameters
from fhir_server.demo.resident import Resident

__all__ = ["SelfManagementGroups"]

# group kind -> (conditions a member may have, name word, weight)
_KINDS = {
    HYPERTENSION: ((HYPERTENSION,), "高血压", 0.6),
    DIABETES: ((DIABETES,), "糖尿病", 0.2),
    "chronic": ((HYPERTENSION, DIABETES), "慢性病", 0.2),
}


@dataclass(slots=True)
class _Group:
    clinic: Clinic
    kind: str
    size: int
    founded: date
    members: list[tuple[str, date]] = field(default_factory=list)


class SelfManagementGroups:
    """Collects members while residents stream past; holds at most ~20 ids per group."""

    def __init__(self, rng: random.Random, network: Network, params: CountyParameters):
        self.rng = rng
        count = round(len(network.clinics) * params.group_village_share)
        chosen = sorted(rng.sample(range(len(network.clinics)), count))
        kinds, weights = list(_KINDS), [k[2] for k in _KINDS.values()]
        low, high = params.group_size
        self._groups: dict[str, _Group] = {}
        for i in chosen:
            clinic = network.clinics[i]
            founded = params.reference_date - timedelta(days=rng.randrange(730, 1100))
            self._groups[clinic.organization_id] = _Group(
                clinic, rng.choices(kinds, weights)[0], rng.randint(low, high), founded)

    def offer(self, resident: Resident) -> None:
        group = self._groups.get(resident.clinic.organization_id)
        if group is None or len(group.members) >= group.size or resident.management_start is None:
            return
        if not any(c in resident.conditions for c in _KINDS[group.kind][0]):
            return
        joined = max(group.founded, resident.management_start) + timedelta(
            days=self.rng.randrange(0, 60))
        group.members.append((resident.patient_id, joined))

    def resources(self) -> list[dict]:
        """The Group resources, in village order; groups without members are left out."""
        return [self._group(g) for g in self._groups.values() if g.members]

    @staticmethod
    def _group(group: _Group) -> dict:
        clinic = group.clinic
        conditions, word, _ = _KINDS[group.kind]
        resource = {
            "resourceType": "Group",
            "id": f"grp-{clinic.township_number:02d}-{clinic.number:02d}",
            "meta": codes.profile(codes.PROFILES["Group"]),
            "active": True,
            "type": "person",
            "actual": True,
            "code": concept(codes.GROUP_TYPE, "self-management-group", "慢性病患者自我管理小组",
                            "慢性病患者自我管理小组"),
            "name": f"{clinic.village_name}{word}自我管理小组",
            "quantity": len(group.members),
            "managingEntity": reference("PractitionerRole", clinic.guide_role_id),
        }
        if len(conditions) == 1:
            icd, display, text = codes.CONDITIONS[conditions[0]]
            resource["characteristic"] = [{
                "code": concept(codes.GROUP_CHARACTERISTIC, "managed-condition", "管理病种"),
                "valueCodeableConcept": concept(codes.ICD10, icd, display, text),
                "exclude": False,
            }]
        resource["member"] = [
            {"entity": {"reference": f"Patient/{pid}"}, "period": {"start": joined.isoformat()},
             "inactive": False}
            for pid, joined in group.members
        ]
        return resource
