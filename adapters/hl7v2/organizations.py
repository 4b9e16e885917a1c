"""The institutions a message names: the sender (MSH-4) and the performing laboratory (OBX-23).

An institution with a unified social credit code (``institution_code`` in senders.csv, or
the code in MSH-4.2 / XON-10) is written as a county-organization, identified by
``urn:oid:2.16.156.10011.1.5``; without one it gets an identifier minted from its name and
does not claim the profile. Either way it is a conditional create (``ifNoneExist``), so the
network's existing Organization is used when it is already stored.
"""

from __future__ import annotations

import re
from adapters.hl7v2.context import MappingContext
from adapters.hl7v2.parsing import Segment
from adapters.hl7v2.transaction import TransactionBuilder, identifier_criteria

__all__ = ["sending_organization", "performing_organization", "organization_by_code", "INSTITUTION"]

INSTITUTION = "urn:oid:2.16.156.10011.1.5"
COUNTY_ORGANIZATION = "https://county-fhir.example.org/fhir/StructureDefinition/county-organization"
ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
_INSTITUTION_CODE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}(-[0-9]{2})?$")


def is_institution_code(value: str) -> bool:
    return bool(_INSTITUTION_CODE.match(value))


def organization_by_code(context: MappingContext, builder: TransactionBuilder, name: str, code: str | None) -> dict:
    """A reference (to a bundle entry) for the institution ``name`` / ``code``."""
    organization: dict = {"resourceType": "Organization", "active": True, "name": name or code}
    if code and is_institution_code(code):
        identifier = {"use": "official", "system": INSTITUTION, "value": code}
        organization["meta"] = {"profile": [COUNTY_ORGANIZATION]}
        organization["type"] = [{"coding": [{"system": ORGANIZATION_TYPE,
                                             "code": context.setting("institution_type") or "prov"}]}]
    else:
        identifier = {"system": context.system_for("organization"), "value": code or name}
    organization["identifier"] = [identifier]
    full_url = builder.add(organization, "POST", "Organization", if_none_exist=identifier_criteria(identifier))
    return {"reference": full_url, "display": organization["name"]}


def sending_organization(context: MappingContext, builder: TransactionBuilder, msh: Segment) -> dict:
    code = context.setting("institution_code") or msh.get(4, 2).strip()
    name = context.setting("institution_name") or msh.get(4, 1).strip() or context.header.sending_application
    return organization_by_code(context, builder, name, code if is_institution_code(code) else None)


def performing_organization(context: MappingContext, builder: TransactionBuilder, obx: Segment,
                            sender: dict) -> dict:
    """OBX-23 (XON: name 1, organization identifier 10) when sent, else the sending institution."""
    name, code = obx.get(23, 1).strip(), obx.get(23, 10).strip()
    if not name and not code:
        return sender
    return organization_by_code(context, builder, name, code or None)
