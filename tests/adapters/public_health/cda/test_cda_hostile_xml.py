"""Hostile or broken XML is refused before anything is expanded, fetched or stored."""

from __future__ import annotations

import pytest

from adapters.public_health.cda.document_import import import_document
from adapters.public_health.cda.parse import MAX_DEPTH, CdaDocumentError, parse_document
from tests.adapters.public_health.cda.samples import BILLION_LAUGHS

CDA_OPEN = '<ClinicalDocument xmlns="urn:hl7-org:v3">'

EXTERNAL_ENTITY = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument SYSTEM "http://127.0.0.1:9/cda.dtd">
<ClinicalDocument xmlns="urn:hl7-org:v3"/>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>
<ClinicalDocument xmlns="urn:hl7-org:v3"/>"""

# the same attack with the DOCTYPE keyword spelt in UTF-16 (a byte search for ASCII misses it)
UTF16_DOCTYPE = EXTERNAL_ENTITY.replace(b'encoding="UTF-8"', b'encoding="UTF-16"').decode().encode("utf-16")


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY, UTF16_DOCTYPE],
                         ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity", "utf16-doctype"])
def test_a_doctype_is_refused_before_parsing(document):
    with pytest.raises(CdaDocumentError) as caught:
        parse_document(document, "evil.xml")
    assert caught.value.status == 400
    assert caught.value.message == "evil.xml: DOCTYPE declarations are not allowed"


def test_a_hostile_document_writes_nothing(county):
    before = _history_size(county)
    with pytest.raises(CdaDocumentError):
        import_document(county, EXTERNAL_ENTITY, what="evil.xml")
    assert _history_size(county) == before


def _history_size(server) -> int:
    from sqlalchemy import func, select

    from fhir_server.storage.schema import resource

    server.audit.flush()  # the audit thread would otherwise add the loaded county's events between counts
    with server.db.read() as conn:
        return conn.execute(select(func.count()).select_from(resource)).scalar_one()


def test_deep_nesting_is_refused():
    document = CDA_OPEN + "<component>" * (MAX_DEPTH + 5) + "</component>" * (MAX_DEPTH + 5) + "</ClinicalDocument>"
    with pytest.raises(CdaDocumentError, match="nesting deeper"):
        parse_document(document.encode())


def test_a_processing_instruction_inside_is_refused_but_a_leading_stylesheet_is_allowed():
    with pytest.raises(CdaDocumentError, match="processing instructions"):
        parse_document(f'{CDA_OPEN}<?php system("id") ?></ClinicalDocument>'.encode())
    root = parse_document(f'<?xml version="1.0"?><?xml-stylesheet type="text/xsl" href="cda.xsl"?>'
                          f"{CDA_OPEN}</ClinicalDocument>".encode())
    assert root.tag == "{urn:hl7-org:v3}ClinicalDocument"


@pytest.mark.parametrize(("document", "message"), [
    (b"", "the document is empty"),
    (b"not xml", "does not start with '<'"),
    (b"<ClinicalDocument xmlns='urn:hl7-org:v3'><title>", "malformed XML"),
    (b"<Patient xmlns='http://hl7.org/fhir'/>", "the root element must be ClinicalDocument"),
    (b"<ClinicalDocument/>", "the root element must be ClinicalDocument"),
])
def test_broken_documents_are_refused_with_a_reason(document, message):
    with pytest.raises(CdaDocumentError, match=message):
        parse_document(document, "bad.xml")


def test_an_unknown_document_kind_is_refused_naming_the_known_ones(county):
    document = (f'{CDA_OPEN}<templateId root="2.16.156.10011.2.1.1.21"/>'
                '<code code="C0001" codeSystem="2.16.156.10011.2.4"/></ClinicalDocument>')
    with pytest.raises(CdaDocumentError) as caught:
        import_document(county, document.encode(), what="summary.xml")
    assert "summary.xml: not a document this server reads" in caught.value.message
    assert "高血压患者随访服务 (2.16.156.10011.2.1.1.12)" in caught.value.message


def test_gb18030_document_is_read_with_its_chinese_text():
    text = ('<?xml version="1.0" encoding="GB18030"?>'
            f'{CDA_OPEN}<title>高血压患者随访服务</title></ClinicalDocument>')
    root = parse_document(text.encode("gb18030"))
    assert root[0].text == "高血压患者随访服务"
