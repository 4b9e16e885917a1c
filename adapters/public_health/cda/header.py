"""The document header (WS/T 500 layout): who the document is about, who wrote it, for whom.

``new_document(kind, header)`` writes the fixed part (realmCode CN, typeId POCD_MT000040,
templateId, id, code, title, effectiveTime, confidentialityCode, languageCode zh-CN, setId,
versionNumber) and then every header field through its XPath in ``mappings/cda/header.csv``:
the same XPath that reads a field writes it, so the table is the one place to correct.

``read_header(root)`` reads the fields back; ``document_kind(root)`` says which kind of
document it is, by template id, else by document code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from lxml import etree

from adapters.public_health.cda.mapping import DocumentKind, code_system_oid, document_kinds, header_maps
from adapters.public_health.cda.parse import CDA_NS, NS, XSI_NS, CdaDocumentError

__all__ = ["CONTACT_FIELDS", "DocumentHeader", "contact_of", "document_kind", "new_document", "read_header",
           "set_path"]

_C = "{" + CDA_NS + "}"


@dataclass
class DocumentHeader:
    """The header fields of ``mappings/cda/header.csv`` (strings as they stand in the XML)."""

    document_id_root: str | None = None
    document_id: str | None = None
    effective_time: str | None = None
    health_record_number: str | None = None
    # the patient's home address and telephone (patientRole/addr, telecom: before patient)
    address_state: str | None = None
    address_city: str | None = None
    address_county: str | None = None
    address_line: str | None = None
    telephone: str | None = None
    resident_id: str | None = None
    name: str | None = None
    sex_code: str | None = None
    birth_date: str | None = None
    author_time: str | None = None
    author_name: str | None = None
    author_org_code: str | None = None
    author_org_name: str | None = None
    custodian_org_code: str | None = None
    custodian_org_name: str | None = None
    recipient_org_code: str | None = None
    recipient_org_name: str | None = None

    def __repr__(self) -> str:  # no personal data in logs
        return f"DocumentHeader(document_id={self.document_id!r})"


CONTACT_FIELDS = ("address_state", "address_city", "address_county", "address_line", "telephone")


def contact_of(header: DocumentHeader) -> dict[str, str]:
    """The address and telephone fields a header carries (as ``DocumentHeader`` keywords)."""
    return {name: value for name in CONTACT_FIELDS if (value := getattr(header, name))}


def new_document(kind: DocumentKind, header: DocumentHeader) -> etree._Element:
    """A ``ClinicalDocument`` with the fixed header of ``kind`` and the fields of ``header``;
    the body (``component/structuredBody``) is added by the document modules."""
    root = etree.Element(_C + "ClinicalDocument", nsmap={None: CDA_NS, "xsi": XSI_NS})
    etree.SubElement(root, _C + "realmCode", code="CN")
    etree.SubElement(root, _C + "typeId", root="2.16.840.1.113883.1.3", extension="POCD_MT000040")
    etree.SubElement(root, _C + "templateId", root=kind.template_id)
    etree.SubElement(root, _C + "id", root=header.document_id_root or code_system_oid("document-id"))
    etree.SubElement(root, _C + "code", code=kind.document_code, codeSystem=kind.document_code_system,
                     codeSystemName="卫生信息共享文档编码体系")
    etree.SubElement(root, _C + "title").text = kind.title
    etree.SubElement(root, _C + "effectiveTime")
    etree.SubElement(root, _C + "confidentialityCode", code="N", codeSystem=code_system_oid("confidentiality"),
                     codeSystemName="Confidentiality", displayName="正常访问保密级别")
    etree.SubElement(root, _C + "languageCode", code="zh-CN")
    etree.SubElement(root, _C + "setId")
    etree.SubElement(root, _C + "versionNumber", value="1")
    maps = header_maps()
    for item in fields(DocumentHeader):
        value = getattr(header, item.name)
        if value not in (None, "") and item.name in maps:
            set_path(root, maps[item.name].xpath, value)
    return root


def read_header(root: etree._Element) -> DocumentHeader:
    header = DocumentHeader()
    for name, entry in header_maps().items():
        found = root.xpath(entry.xpath, namespaces=NS)
        if found:
            value = found[0] if isinstance(found[0], str) else "".join(found[0].itertext())
            value = value.strip()
            setattr(header, name, value or None)
    return header


def document_kind(root: etree._Element, what: str = "CDA document") -> DocumentKind:
    templates = set(root.xpath("cda:templateId/@root", namespaces=NS))
    codes = set(root.xpath("cda:code/@code", namespaces=NS))
    for kind in document_kinds().values():
        if kind.template_id in templates:
            return kind
    for kind in document_kinds().values():
        if kind.document_code in codes:
            return kind
    known = ", ".join(f"{k.title} ({k.template_id})" for k in document_kinds().values())
    raise CdaDocumentError(f"{what}: not a document this server reads (template ids "
                           f"{sorted(templates) or 'none'}); it reads: {known}")


# --------------------------------------------------------------------------------------------
# writing through an XPath of the simple form the tables use:
#   step/step[@attr='value']/.../@attribute   or   .../element (its text)
# --------------------------------------------------------------------------------------------

_STEP = re.compile(r"cda:([A-Za-z]+)((?:\[@[A-Za-z]+='[^']*'\])*)\Z")
_PREDICATE = re.compile(r"\[@([A-Za-z]+)='([^']*)'\]")


def set_path(root: etree._Element, xpath: str, value: str) -> None:
    """Set the attribute or text ``xpath`` points at, creating the elements on the way (and
    the attributes their predicates name) when they are not there yet."""
    steps = xpath.split("/")
    attribute = steps.pop()[1:] if steps[-1].startswith("@") else None
    element = root
    for step in steps:
        match = _STEP.match(step)
        if not match:
            raise ValueError(f"header XPath step {step!r} is not of the form cda:name[@attr='value']")
        tag = _C + match[1]
        predicates = _PREDICATE.findall(match[2])
        for child in element.iterchildren(tag):
            if all(child.get(k) == v for k, v in predicates):
                element = child
                break
        else:
            element = etree.SubElement(element, tag, dict(predicates))
    if attribute:
        element.set(attribute, value)
    else:
        element.text = value
