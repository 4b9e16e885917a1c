"""FHIR XML <-> JSON conversion (fhir_server.fhir.xml)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from lxml import etree

from fhir_server.fhir.xml import FHIR_NS, MAX_DEPTH, XHTML_NS, json_to_xml, warm_up, xml_to_json

SPEC_EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "spec-examples"
F = f"{{{FHIR_NS}}}"
DIV = '<div xmlns="http://www.w3.org/1999/xhtml">'


# ----------------------------------------------------------------------------------------------
# realistic resources
# ----------------------------------------------------------------------------------------------

PATIENT = {
    "resourceType": "Patient",
    "id": "zhang-san",
    "meta": {
        "versionId": "3",
        "lastUpdated": "2024-03-01T08:30:00Z",
        "profile": ["http://example.org/fhir/StructureDefinition/cn-patient"],
    },
    "text": {
        "status": "generated",
        "div": DIV
        + "<p>患者：<b>张三</b>，男，1980-05-12</p><ul><li>电话 138 0000 0000</li></ul></div>",
    },
    "extension": [
        {
            "url": "http://example.org/fhir/StructureDefinition/ethnicity",
            "valueCodeableConcept": {
                "coding": [
                    {"system": "http://example.org/cs/ethnic", "code": "01", "display": "汉族"}
                ]
            },
        },
        {
            "url": "http://example.org/fhir/StructureDefinition/household",
            "extension": [
                {"url": "size", "valueInteger": 4},
                {"url": "income", "valueDecimal": 12345.67},
                {"url": "rural", "valueBoolean": True},
            ],
        },
    ],
    "identifier": [
        {
            "id": "id-card",
            "use": "official",
            "system": "urn:oid:1.2.156.112604.1.2.1",
            "value": "110101198005120000",
        }
    ],
    "active": True,
    "name": [
        {
            "use": "official",
            "text": "张三",
            "family": "张",
            "_family": {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/language",
                        "valueCode": "zh-CN",
                    }
                ]
            },
            "given": ["三", None],
            "_given": [
                None,
                {
                    "id": "g2",
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation",
                            "valueCode": "SYL",
                        }
                    ],
                },
            ],
        },
        {"use": "usual", "given": ["San"], "_given": [{"id": "pinyin"}]},
    ],
    "telecom": [{"system": "phone", "value": "138 0000 0000", "use": "mobile", "rank": 1}],
    "gender": "male",
    "_gender": {"id": "gender-1"},
    "_birthDate": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "unknown",
            }
        ]
    },
    "deceasedBoolean": False,
    "address": [
        {
            "use": "home",
            "line": ["朝阳区建国路 88 号", "3 单元 502 室"],
            "city": "北京",
            "postalCode": "100022",
            "country": "CN",
            "period": {"start": "2010-01-01"},
        }
    ],
    "multipleBirthInteger": 2,
    "communication": [
        {
            "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "zh-CN"}]},
            "preferred": True,
        }
    ],
    "managingOrganization": {"reference": "Organization/1", "display": "县人民医院"},
}

OBSERVATION = {
    "resourceType": "Observation",
    "id": "bp-1",
    "meta": {"lastUpdated": "2024-03-01T08:30:00.123+08:00"},
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                    "display": "Vital Signs",
                }
            ]
        }
    ],
    "code": {
        "coding": [
            {"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}
        ],
        "text": "血压",
    },
    "subject": {"reference": "Patient/zhang-san"},
    "effectiveDateTime": "2024-03-01T08:00:00Z",
    "issued": "2024-03-01T08:05:00.000Z",
    "interpretation": [{"text": "偏高"}],
    "bodySite": {"text": "左臂"},
    "referenceRange": [
        {"low": {"value": 0.5, "unit": "mmol/L"}, "high": {"value": 1.75, "unit": "mmol/L"}}
    ],
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {
                "value": 141.5,
                "comparator": ">",
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueQuantity": {
                "value": 90,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        },
        {
            "code": {"text": "tiny"},
            "valueQuantity": {"value": 1.5e-07, "unit": "g"},
        },
        {"code": {"text": "count"}, "valueInteger": -3},
        {"code": {"text": "flag"}, "valueBoolean": False},
        {
            "code": {"text": "ratio"},
            "valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 128.0}},
        },
        {
            "code": {"text": "waveform"},
            "valueSampledData": {
                "origin": {"value": 2048},
                "period": 10.0,
                "factor": 1.25,
                "dimensions": 1,
                "data": "2041 2043 2047",
            },
        },
    ],
}

BUNDLE = {
    "resourceType": "Bundle",
    "id": "tx-1",
    "type": "transaction-response",
    "timestamp": "2024-03-01T09:00:00+08:00",
    "link": [{"relation": "self", "url": "http://example.org/fhir"}],
    "entry": [
        {
            "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
            "resource": PATIENT,
            "search": {"mode": "match", "score": 1},
            "response": {"status": "201 Created", "location": "Patient/zhang-san/_history/3"},
        },
        {
            "fullUrl": "http://example.org/fhir/Observation/bp-1",
            "resource": OBSERVATION,
            "response": {
                "status": "200 OK",
                "etag": 'W/"1"',
                "outcome": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "information",
                            "code": "informational",
                            "diagnostics": "已更新",
                        }
                    ],
                },
            },
        },
    ],
}

CONTAINED = {
    "resourceType": "MedicationRequest",
    "id": "mr-1",
    "text": {"status": "generated", "div": DIV + "二甲双胍 0.5 g 每日两次</div>"},
    "contained": [
        {
            "resourceType": "Medication",
            "id": "med",
            "code": {"text": "二甲双胍片"},
            "ingredient": [
                {
                    "itemCodeableConcept": {"text": "metformin"},
                    "isActive": True,
                    "strength": {
                        "numerator": {"value": 0.5, "unit": "g"},
                        "denominator": {"value": 1, "unit": "tablet"},
                    },
                }
            ],
        },
        {
            "resourceType": "Practitioner",
            "id": "dr",
            "name": [{"text": "李医生"}],
        },
    ],
    "status": "active",
    "intent": "order",
    "medicationReference": {"reference": "#med"},
    "subject": {"reference": "Patient/zhang-san"},
    "requester": {"reference": "#dr"},
    "dosageInstruction": [
        {
            "sequence": 1,
            "text": "每日两次，每次一片",
            "timing": {
                "repeat": {"frequency": 2, "period": 1, "periodUnit": "d", "when": ["MORN", "EVE"]}
            },
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
        }
    ],
}

PARAMETERS = {
    "resourceType": "Parameters",
    "parameter": [
        {"name": "count", "valueUnsignedInt": 0},
        {"name": "limit", "valueDecimal": 2.5},
        {"name": "patient", "resource": {"resourceType": "Patient", "id": "p", "active": False}},
        {"name": "nested", "part": [{"name": "inner", "valueString": "内部"}]},
    ],
}

REALISTIC = {
    "patient": PATIENT,
    "observation": OBSERVATION,
    "bundle": BUNDLE,
    "contained": CONTAINED,
    "parameters": PARAMETERS,
}


def _children(el):
    return [c for c in el if isinstance(c.tag, str)]


def _local(el):
    return etree.QName(el).localname


@pytest.mark.parametrize("name", sorted(REALISTIC))
@pytest.mark.parametrize("pretty", [False, True])
def test_round_trip_realistic(name, pretty):
    resource = REALISTIC[name]
    original = copy.deepcopy(resource)
    xml = json_to_xml(resource, pretty=pretty)
    assert resource == original  # input untouched
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    back = xml_to_json(xml)
    assert back == resource


def test_numbers_and_booleans_keep_their_json_types():
    back = xml_to_json(json_to_xml(OBSERVATION))
    comps = back["component"]
    assert comps[0]["valueQuantity"]["value"] == 141.5
    assert type(comps[0]["valueQuantity"]["value"]) is float
    assert comps[1]["valueQuantity"]["value"] == 90
    assert type(comps[1]["valueQuantity"]["value"]) is int
    assert comps[2]["valueQuantity"]["value"] == 1.5e-07
    assert comps[3]["valueInteger"] == -3 and type(comps[3]["valueInteger"]) is int
    assert comps[4]["valueBoolean"] is False
    assert comps[6]["valueSampledData"]["dimensions"] == 1
    # timestamps are not rewritten (no Z -> +00:00)
    assert back["effectiveDateTime"] == "2024-03-01T08:00:00Z"
    assert back["issued"] == "2024-03-01T08:05:00.000Z"


def test_decimal_text_parsing():
    xml = f"""<Observation xmlns="{FHIR_NS}"><status value="final"/><code><text value="x"/></code>
      <valueQuantity><value value="1.50"/></valueQuantity>
      <referenceRange><low><value value="100"/></low><high><value value="-0.0"/></high></referenceRange>
      <referenceRange><low><value value="1.0E3"/></low><high><value value="2e-3"/></high></referenceRange>
    </Observation>""".encode()
    back = xml_to_json(xml)
    assert back["valueQuantity"]["value"] == 1.5
    rr = back["referenceRange"]
    assert rr[0]["low"]["value"] == 100 and type(rr[0]["low"]["value"]) is int
    assert rr[0]["high"]["value"] == 0.0
    assert rr[1]["low"]["value"] == 1000.0
    assert rr[1]["high"]["value"] == 0.002
    # decimals written from JSON numbers keep their shortest exact text
    out = json_to_xml(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueQuantity": {"value": 0.1},
        }
    )
    assert b'<value value="0.1"/>' in out


@pytest.mark.parametrize(
    "element, bad",
    [
        ('<active value="yes"/>', "must be 'true' or 'false'"),
        ('<multipleBirthInteger value="1.5"/>', "must be an integer"),
        ('<active value="True"/>', "must be 'true' or 'false'"),
    ],
)
def test_bad_primitive_values(element, bad):
    with pytest.raises(ValueError, match=bad):
        xml_to_json(f'<Patient xmlns="{FHIR_NS}">{element}</Patient>'.encode())


def test_bad_decimal():
    xml = f"""<Observation xmlns="{FHIR_NS}"><status value="final"/><code><text value="x"/></code>
      <valueQuantity><value value="1,5"/></valueQuantity></Observation>""".encode()
    with pytest.raises(ValueError, match="must be a decimal"):
        xml_to_json(xml)


# ----------------------------------------------------------------------------------------------
# the XML shape produced
# ----------------------------------------------------------------------------------------------


def test_xml_shape_follows_fhir_rules():
    # JSON keys deliberately in reverse order: XML must follow the definition order
    scrambled = dict(reversed(list(PATIENT.items())))
    root = etree.fromstring(json_to_xml(scrambled))
    assert root.tag == F + "Patient"
    assert root.nsmap == {None: FHIR_NS}
    names = [_local(c) for c in _children(root)]
    assert names == [
        "id",
        "meta",
        "text",
        "extension",
        "extension",
        "identifier",
        "active",
        "name",
        "name",
        "telecom",
        "gender",
        "birthDate",
        "deceasedBoolean",
        "address",
        "multipleBirthInteger",
        "communication",
        "managingOrganization",
    ]
    assert root.find(F + "id").get("value") == "zhang-san"
    # Element.id and Extension.url are attributes
    assert root.find(F + "identifier").get("id") == "id-card"
    assert root.find(F + "identifier").find(F + "id") is None
    ext = root.find(F + "extension")
    assert ext.get("url") == "http://example.org/fhir/StructureDefinition/ethnicity"
    # primitive with id attribute, value and extension
    given = root.find(F + "name").findall(F + "given")
    assert given[0].attrib == {"value": "三"}
    assert given[1].get("id") == "g2" and given[1].get("value") is None
    assert given[1].find(F + "extension").get("url").endswith("iso21090-EN-representation")
    assert root.find(F + "gender").attrib == {"id": "gender-1", "value": "male"}
    # primitive carrying only an extension
    birth = root.find(F + "birthDate")
    assert birth.get("value") is None and birth.find(F + "extension") is not None
    # order inside an element: family before given, HumanName order
    assert [_local(c) for c in _children(root.find(F + "name"))] == [
        "use",
        "text",
        "family",
        "given",
        "given",
    ]
    # narrative div is real XHTML, not escaped text
    div = root.find(F + "text").find(f"{{{XHTML_NS}}}div")
    assert div is not None and div.find(f"{{{XHTML_NS}}}p") is not None
    # numbers / booleans
    assert root.find(F + "active").get("value") == "true"
    assert root.find(F + "deceasedBoolean").get("value") == "false"


def test_contained_and_bundle_resources_are_wrapped():
    root = etree.fromstring(json_to_xml(CONTAINED))
    contained = root.findall(F + "contained")
    assert [_local(_children(c)[0]) for c in contained] == ["Medication", "Practitioner"]
    assert root.find(F + "contained").find(F + "Medication").find(F + "id").get("value") == "med"

    root = etree.fromstring(json_to_xml(BUNDLE))
    entries = root.findall(F + "entry")
    assert [_local(c) for c in _children(entries[0])] == [
        "fullUrl",
        "resource",
        "search",
        "response",
    ]
    assert _children(entries[0].find(F + "resource"))[0].tag == F + "Patient"
    outcome = entries[1].find(F + "response").find(F + "outcome")
    assert _children(outcome)[0].tag == F + "OperationOutcome"

    root = etree.fromstring(json_to_xml(PARAMETERS))
    assert root.findall(F + "parameter")[2].find(F + "resource").find(F + "Patient") is not None


def test_pretty_print_does_not_touch_narrative():
    pretty = json_to_xml(PATIENT, pretty=True)
    assert b'\n  <id value="zhang-san"/>' in pretty
    assert PATIENT["text"]["div"].encode() in pretty
    assert xml_to_json(pretty)["text"]["div"] == PATIENT["text"]["div"]


def test_chinese_is_utf8_not_escaped():
    xml = json_to_xml(PATIENT)
    assert "张三".encode() in xml
    assert b"&#" not in xml
    assert xml_to_json(xml)["name"][0]["text"] == "张三"


def test_special_characters_survive():
    resource = {
        "resourceType": "Patient",
        "name": [{"text": "a < b & \"c\" 'd'\n\tline2\r\n  ", "given": ["  spaced  "]}],
    }
    xml = json_to_xml(resource)
    assert xml_to_json(xml) == resource


# ----------------------------------------------------------------------------------------------
# hand-written XML in the spec's format
# ----------------------------------------------------------------------------------------------

HAND_WRITTEN = """<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment before the root is allowed -->
<Patient xmlns="http://hl7.org/fhir"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://hl7.org/fhir ../../schema/patient.xsd">
  <id value="example"/>
  <meta>
    <lastUpdated value="2012-05-29T23:45:32Z"/>
  </meta>
  <text>
    <status value="generated"/>
    <div xmlns="http://www.w3.org/1999/xhtml"><p>Peter James <b>Chalmers</b> &amp; 李四</p></div>
  </text>
  <contained>
    <Organization>
      <id value="org1"/>
      <name value="Gastroenterology @ Acme Hospital"/>
    </Organization>
  </contained>
  <extension url="http://example.org/fhir/StructureDefinition/patient-importance">
    <valueCodeableConcept>
      <text value="VIP"/>
    </valueCodeableConcept>
  </extension>
  <!-- MRN assigned by ACME healthcare on 6-May 2001 -->
  <identifier id="mrn">
    <use value="usual"/>
    <type>
      <coding>
        <system value="http://terminology.hl7.org/CodeSystem/v2-0203"/>
        <code value="MR"/>
      </coding>
    </type>
    <system value="urn:oid:1.2.36.146.595.217.0.1"/>
    <value value="12345"/>
    <period>
      <start value="2001-05-06"/>
    </period>
    <assigner>
      <reference value="#org1"/>
    </assigner>
  </identifier>
  <active value="true"/>
  <name>
    <use value="official"/>
    <family value="Chalmers"/>
    <given value="Peter"/>
    <given id="n2">
      <extension url="http://example.org/fhir/StructureDefinition/middle">
        <valueBoolean value="true"/>
      </extension>
    </given>
    <given value="James"/>
  </name>
  <gender value="male"/>
  <birthDate value="1974-12-25">
    <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
      <valueDateTime value="1974-12-25T14:35:45-05:00"/>
    </extension>
  </birthDate>
  <deceasedBoolean value="false"/>
  <address>
    <line value="534 Erewhon St"/>
    <city value="PleasantVille"/>
    <postalCode value="3999"/>
  </address>
  <multipleBirthInteger value="1"/>
  <contact>
    <relationship>
      <coding>
        <system value="http://terminology.hl7.org/CodeSystem/v2-0131"/>
        <code value="N"/>
      </coding>
    </relationship>
    <name>
      <family value="du Marché">
        <extension url="http://hl7.org/fhir/StructureDefinition/humanname-own-prefix">
          <valueString value="VV"/>
        </extension>
      </family>
      <given value="Bénédicte"/>
    </name>
  </contact>
  <managingOrganization>
    <reference value="#org1"/>
  </managingOrganization>
</Patient>
"""

HAND_WRITTEN_JSON = {
    "resourceType": "Patient",
    "id": "example",
    "meta": {"lastUpdated": "2012-05-29T23:45:32Z"},
    "text": {
        "status": "generated",
        "div": DIV + "<p>Peter James <b>Chalmers</b> &amp; 李四</p></div>",
    },
    "contained": [
        {"resourceType": "Organization", "id": "org1", "name": "Gastroenterology @ Acme Hospital"}
    ],
    "extension": [
        {
            "url": "http://example.org/fhir/StructureDefinition/patient-importance",
            "valueCodeableConcept": {"text": "VIP"},
        }
    ],
    "identifier": [
        {
            "id": "mrn",
            "use": "usual",
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                ]
            },
            "system": "urn:oid:1.2.36.146.595.217.0.1",
            "value": "12345",
            "period": {"start": "2001-05-06"},
            "assigner": {"reference": "#org1"},
        }
    ],
    "active": True,
    "name": [
        {
            "use": "official",
            "family": "Chalmers",
            "given": ["Peter", None, "James"],
            "_given": [
                None,
                {
                    "id": "n2",
                    "extension": [
                        {
                            "url": "http://example.org/fhir/StructureDefinition/middle",
                            "valueBoolean": True,
                        }
                    ],
                },
                None,
            ],
        }
    ],
    "gender": "male",
    "birthDate": "1974-12-25",
    "_birthDate": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00",
            }
        ]
    },
    "deceasedBoolean": False,
    "address": [{"line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999"}],
    "multipleBirthInteger": 1,
    "contact": [
        {
            "relationship": [
                {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}
                    ]
                }
            ],
            "name": {
                "family": "du Marché",
                "_family": {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix",
                            "valueString": "VV",
                        }
                    ]
                },
                "given": ["Bénédicte"],
            },
        }
    ],
    "managingOrganization": {"reference": "#org1"},
}


def test_parse_hand_written_fixture():
    back = xml_to_json(HAND_WRITTEN.encode("utf-8"))
    assert back == HAND_WRITTEN_JSON
    # and the JSON serialises back to equivalent XML
    assert xml_to_json(json_to_xml(back)) == HAND_WRITTEN_JSON


def test_parse_accepts_str_and_out_of_order_elements():
    xml = f'<Patient xmlns="{FHIR_NS}"><gender value="female"/><id value="x"/></Patient>'
    assert xml_to_json(xml) == {"resourceType": "Patient", "gender": "female", "id": "x"}


def test_bundle_with_nested_bundle_and_search_score():
    inner = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": PATIENT}]}
    outer = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [{"resource": inner, "search": {"score": 0.75}}],
    }
    assert xml_to_json(json_to_xml(outer)) == outer


# ----------------------------------------------------------------------------------------------
# encodings
# ----------------------------------------------------------------------------------------------

CN_XML = """<?xml version="1.0" encoding="{enc}"?>
<Patient xmlns="http://hl7.org/fhir">
  <name><text value="王小明"/><family value="王"/><given value="小明"/></name>
  <address><city value="广州市"/></address>
</Patient>
"""


@pytest.mark.parametrize("encoding", ["GB18030", "GBK", "gb18030", "UTF-8", "UTF-16"])
def test_declared_encodings(encoding):
    data = CN_XML.format(enc=encoding).encode(encoding)
    back = xml_to_json(data)
    assert back == {
        "resourceType": "Patient",
        "name": [{"text": "王小明", "family": "王", "given": ["小明"]}],
        "address": [{"city": "广州市"}],
    }


def test_utf8_bom():
    data = b"\xef\xbb\xbf" + CN_XML.format(enc="UTF-8").encode("utf-8")
    assert xml_to_json(data)["name"][0]["text"] == "王小明"


# ----------------------------------------------------------------------------------------------
# security
# ----------------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Patient xmlns="http://hl7.org/fhir"><name><text value="&lol9;"/></name></Patient>
"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><name><text value="&e;"/></name></Patient>
"""

XXE_ELEMENT_TEXT = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>
<div xmlns="http://www.w3.org/1999/xhtml">&e;</div></text></Patient>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Patient SYSTEM "http://127.0.0.1:9/evil.dtd">
<Patient xmlns="http://hl7.org/fhir"><id value="x"/></Patient>
"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>
<Patient xmlns="http://hl7.org/fhir"><id value="x"/></Patient>
"""


@pytest.mark.parametrize(
    "data",
    [BILLION_LAUGHS, XXE, XXE_ELEMENT_TEXT, EXTERNAL_DTD, PARAMETER_ENTITY],
    ids=["billion-laughs", "xxe-attribute", "xxe-text", "external-dtd", "parameter-entity"],
)
def test_doctype_is_refused(data):
    with pytest.raises(ValueError, match="DOCTYPE") as info:
        xml_to_json(data)
    assert "root:" not in str(info.value)


def test_doctype_refused_in_other_encodings():
    for enc in ("utf-16", "gb18030"):
        data = XXE.decode().replace('version="1.0"', f'version="1.0" encoding="{enc}"').encode(enc)
        with pytest.raises(ValueError, match="DOCTYPE"):
            xml_to_json(data)
    with pytest.raises(ValueError, match="DOCTYPE"):
        xml_to_json(XXE.decode())


def test_doctype_refused_in_wide_encodings():
    for codec in ("utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"):
        data = XXE.decode().replace('version="1.0"', f'version="1.0" encoding="{codec}"')
        with pytest.raises(ValueError, match="DOCTYPE"):
            xml_to_json(data.encode(codec))


def test_utf7_doctype_smuggling_is_refused():
    # "+ADw-" is '<' in UTF-7: a byte scan for "<!DOCTYPE" cannot see this one
    data = (
        b'<?xml version="1.0" encoding="UTF-7"?>'
        b"+ADw-!DOCTYPE x +AFsAPA-!ENTITY e SYSTEM +ACI-file:///etc/passwd+ACIAPgBd-+AD4-"
        b'<Patient xmlns="http://hl7.org/fhir"/>'
    )
    with pytest.raises(ValueError, match="unsupported encoding"):
        xml_to_json(data)


@pytest.mark.parametrize(
    "data",
    [BILLION_LAUGHS, XXE, XXE_ELEMENT_TEXT, EXTERNAL_DTD, PARAMETER_ENTITY],
    ids=["billion-laughs", "xxe-attribute", "xxe-text", "external-dtd", "parameter-entity"],
)
def test_parser_is_hardened_even_without_the_doctype_precheck(monkeypatch, data):
    """Defence in depth: if the byte scan for DOCTYPE ever misses one, the lxml parser options
    and the post-parse DTD check still refuse the document without expanding or fetching."""
    import fhir_server.fhir.xml as xml_module

    monkeypatch.setattr(xml_module, "_precheck", lambda data, what: None)
    with pytest.raises(ValueError) as info:
        xml_to_json(data)
    message = str(info.value)
    assert "root:" not in message and "lollollol" not in message


def test_doctype_in_narrative_string_is_refused_on_output():
    resource = {
        "resourceType": "Patient",
        "text": {
            "status": "generated",
            "div": '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            '<div xmlns="http://www.w3.org/1999/xhtml">&e;</div>',
        },
    }
    with pytest.raises(ValueError, match="DOCTYPE"):
        json_to_xml(resource)


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><?xml-stylesheet href="x.xsl"?><Patient xmlns="http://hl7.org/fhir"/>',
        b'<Patient xmlns="http://hl7.org/fhir"><?php echo 1; ?><id value="x"/></Patient>',
        b'<Patient xmlns="http://hl7.org/fhir"><id value="x"/></Patient><?trailer?>',
        (
            b'<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>'
            b'<div xmlns="http://www.w3.org/1999/xhtml"><?pi x?>t</div></text></Patient>'
        ),
    ],
    ids=["stylesheet", "inside", "after-root", "inside-div"],
)
def test_processing_instructions_are_refused(data):
    with pytest.raises(ValueError, match="processing instructions"):
        xml_to_json(data)


def _nested_extensions(levels: int) -> bytes:
    return (
        f'<Patient xmlns="{FHIR_NS}">'
        + '<extension url="u">' * levels
        + "</extension>" * levels
        + "</Patient>"
    ).encode()


def test_depth_limit():
    # fine just below the limit
    xml_to_json(_nested_extensions(MAX_DEPTH - 2))
    with pytest.raises(ValueError, match="nesting deeper"):
        xml_to_json(_nested_extensions(MAX_DEPTH + 1))
    # far beyond: refused by the parser or by us, never a RecursionError
    with pytest.raises(ValueError):
        xml_to_json(_nested_extensions(50_000))


def test_depth_limit_on_output():
    ext: dict = {"url": "leaf", "valueString": "x"}
    for _ in range(MAX_DEPTH + 5):
        ext = {"url": "u", "extension": [ext]}
    with pytest.raises(ValueError, match="nesting deeper"):
        json_to_xml({"resourceType": "Patient", "extension": [ext]})


# ----------------------------------------------------------------------------------------------
# malformed / invalid input
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        (b'<Patient xmlns="http://hl7.org/fhir"><id value="x"></Patient>', "malformed XML"),
        (b"<Patient", "malformed XML"),
        (b"not xml at all", "malformed XML"),
        (b"", "empty"),
        (b"   \n", "empty"),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><name><text value="a &bogus; b"/></name></Patient>',
            "malformed XML",
        ),
        (b'<Patient><id value="x"/></Patient>', "namespace"),
        (b'<Patient xmlns="http://hl7.org/fhir/wrong"><id value="x"/></Patient>', "namespace"),
        (b'<Unicorn xmlns="http://hl7.org/fhir"/>', "unknown resource type 'Unicorn'"),
        (b'<HumanName xmlns="http://hl7.org/fhir"/>', "unknown resource type 'HumanName'"),
        (b'<DomainResource xmlns="http://hl7.org/fhir"/>', "unknown resource type"),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><colour value="x"/></Patient>',
            "unknown element Patient.colour",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><gender value="female"/></Patient>',
            "may occur only once",
        ),
        (b'<Patient xmlns="http://hl7.org/fhir">hello<id value="x"/></Patient>', "text content"),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><id value="x" colour="red"/></Patient>',
            "attribute 'colour'",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><name><id value="n"/></name></Patient>',
            "must be an XML attribute",
        ),
        (b'<Patient xmlns="http://hl7.org/fhir"><gender/></Patient>', "neither a value"),
        (b'<Patient xmlns="http://hl7.org/fhir"><contained/></Patient>', "must contain a resource"),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><contained><Patient/><Patient/></contained></Patient>',
            "exactly one resource",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div/></text></Patient>',
            "XHTML",
        ),
        (b'<Patient xmlns="http://hl7.org/fhir" xmlns:x="urn:x"><x:foo/></Patient>', "namespace"),
        (
            b'<?xml version="1.0" encoding="NO-SUCH-ENCODING"?><Patient xmlns="http://hl7.org/fhir"/>',
            "unsupported encoding",
        ),
        (
            b'<?xml version="1.0" encoding="UTF-7"?><Patient xmlns="http://hl7.org/fhir"/>',
            "unsupported encoding",
        ),
        (
            '<?xml version="1.0" encoding="cp500"?><Patient xmlns="http://hl7.org/fhir"/>'.encode(
                "cp500"
            ),
            "malformed XML",
        ),
    ],
)
def test_invalid_xml_raises_value_error(data, message):
    with pytest.raises(ValueError, match=message) as info:
        xml_to_json(data)
    assert str(info.value)  # a message, not an empty error


@pytest.mark.parametrize(
    "resource, message",
    [
        ({"id": "x"}, "no resourceType"),
        ({"resourceType": "Unicorn"}, "Unknown FHIR resource type"),
        ({"resourceType": "Patient", "colour": "red"}, "unknown element 'colour'"),
        ({"resourceType": "Patient", "active": "yes"}, "expected a boolean"),
        ({"resourceType": "Patient", "multipleBirthInteger": True}, "expected a number"),
        ({"resourceType": "Patient", "name": {"family": "x"}}, "must be a JSON array"),
        ({"resourceType": "Patient", "gender": ["male"]}, "expected a string"),
        (
            {"resourceType": "Patient", "name": [{"given": ["a"], "_given": [None, None]}]},
            "differ in length",
        ),
        ({"resourceType": "Patient", "_name": {"id": "x"}}, "only allowed for primitive"),
        ({"resourceType": "Patient", "contained": [{"id": "x"}]}, "no resourceType"),
        (
            {"resourceType": "Patient", "text": {"status": "generated", "div": "<div>"}},
            "not well-formed",
        ),
        (
            {"resourceType": "Patient", "text": {"status": "generated", "div": "<p>x</p>"}},
            "narrative must be",
        ),
        (
            {"resourceType": "Observation", "valueQuantity": {"value": float("nan")}},
            "not a valid decimal",
        ),
    ],
)
def test_invalid_json_raises_value_error(resource, message):
    with pytest.raises(ValueError, match=message):
        json_to_xml(resource)


def test_warm_up():
    warm_up(["Patient", "Observation", "Bundle"])
    with pytest.raises(ValueError, match="Unknown FHIR resource type"):
        warm_up(["Unicorn"])


def test_html_entities_in_stored_narrative_are_tolerated():
    resource = {
        "resourceType": "Patient",
        "text": {"status": "generated", "div": DIV + "a&nbsp;b &amp; c</div>"},
    }
    back = xml_to_json(json_to_xml(resource))
    assert back["text"]["div"] == DIV + "a\u00a0b &amp; c</div>"


# ----------------------------------------------------------------------------------------------
# official examples (tests/fixtures/spec-examples, vendored by another test suite)
# ----------------------------------------------------------------------------------------------


def _spec_examples():
    if not SPEC_EXAMPLES.is_dir():
        return []
    return sorted(p for p in SPEC_EXAMPLES.glob("*.json") if p.name != "VENDORED.json")


def _canonical_divs(node):
    """Narrative divs compared as XHTML (C14N): '&quot;' in text and '"' are the same XML."""
    if isinstance(node, dict):
        return {
            k: (
                etree.tostring(etree.fromstring(v.encode("utf-8")), method="c14n")
                if k == "div" and isinstance(v, str)
                else _canonical_divs(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_canonical_divs(v) for v in node]
    return node


@pytest.mark.skipif(not _spec_examples(), reason="tests/fixtures/spec-examples is not present")
@pytest.mark.parametrize("path", _spec_examples(), ids=lambda p: p.name)
def test_spec_example_round_trip(path):
    resource = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(resource, dict) or "resourceType" not in resource:
        pytest.skip(f"{path.name} is not a FHIR resource")
    back = xml_to_json(json_to_xml(resource))
    if back != resource:
        assert _canonical_divs(back) == _canonical_divs(resource)
    pretty = xml_to_json(json_to_xml(resource, pretty=True))
    assert _canonical_divs(pretty) == _canonical_divs(resource)
