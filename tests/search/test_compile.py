"""Compiling a parsed search into SQL (fhir_server.search.compile).

Two kinds of test: the shape of the SQL (what joins what, NOT IN for :missing, both dialects
compile), and the meaning of each index kind's conditions, run on an in-memory SQLite database
filled by the real indexer (no HTTP, no services).
"""

from __future__ import annotations

import contextlib
import itertools
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from fhir_server.errors import InvalidRequest
from fhir_server.search.compile import SAMPLE, SearchCompiler, count_of
from fhir_server.search.indexer import Indexer
from fhir_server.search.parse import parse_search
from fhir_server.search.registry import SearchParamRegistry
from fhir_server.storage.schema import INDEX_TABLES, metadata, resource

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
BASE = "http://testserver/fhir"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RID = "urn:oid:2.16.156.10011.1.3"
ICD10 = "http://hl7.org/fhir/sid/icd-10"


class Keys:
    """Stands in for SearchParamKeys: a small integer per (type, code), made on first use."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], int] = {}
        self._next = itertools.count(1)

    def get(self, rtype: str, code: str) -> int:
        if (rtype, code) not in self._keys:
            self._keys[(rtype, code)] = next(self._next)
        return self._keys[(rtype, code)]

    def lookup(self, rtype: str, code: str) -> int | None:
        return self._keys.get((rtype, code))


@pytest.fixture(scope="module")
def registry() -> SearchParamRegistry:
    return SearchParamRegistry.from_profiles(PROFILES)


@pytest.fixture(scope="module")
def keys(registry) -> Keys:
    keys = Keys()
    for rtype in sorted(registry.supported_types):
        for code, param in sorted(registry.params_for(rtype).items()):
            keys.get(rtype, code)
            for position in range(len(param.components)):
                keys.get(rtype, f"{code}~{position}")
    return keys


@pytest.fixture(scope="module")
def compiler(keys) -> SearchCompiler:
    return SearchCompiler(keys, BASE)


def request(registry, rtype: str, pairs: list[tuple[str, str]] | str):
    if isinstance(pairs, str):
        pairs = [tuple(p.split("=", 1)) for p in pairs.split("&")]
    return parse_search(registry, rtype, pairs)


def sql(statement, dialect=None) -> str:
    return str(statement.compile(dialect=dialect or sqlite.dialect()))


def where_sql(registry, compiler, rtype, pairs, dialect=None) -> str:
    return sql(compiler.page(request(registry, rtype, pairs)), dialect)


# ---- the shape of the SQL --------------------------------------------------------------------


def test_every_query_excludes_other_types_and_deleted_resources(registry, compiler, keys):
    # without a filter, the type column does it
    text = where_sql(registry, compiler, "Patient", "_count=5")
    assert "resource.res_type = " in text and "resource.deleted IS 0" in text
    # with one, the driving index rows belong to the type's own parameter key
    stmt = compiler.page(request(registry, "Patient", "name=王"))
    assert "resource.pid IN (SELECT idx_string.pid" in sql(stmt)
    assert keys.lookup("Patient", "name") in stmt.compile().params.values()
    assert "resource.deleted IS false" in where_sql(registry, compiler, "Patient", "name=王", postgresql.dialect())


def test_composite_joins_its_components_on_pid_and_grp(registry, compiler):
    text = where_sql(registry, compiler, "Observation", [("component-code-value-quantity", "http://loinc.org|8462-4$gt180")])
    assert "idx_token AS c0" in text and "idx_quantity AS c1" in text
    assert "c1.pid = c0.pid" in text
    assert "c1.grp = c0.grp" in text


def test_composite_alternatives_are_a_union(registry, compiler):
    text = where_sql(registry, compiler, "Observation", [("code-value-quantity", "1558-6$gt100,14771-0$gt7,2345-7$gt5")])
    assert text.count("UNION") == 2


@pytest.mark.parametrize("query", ["active:missing=true", "birthdate:missing=true", "organization:missing=true"])
def test_missing_true_is_not_in_any_row(registry, compiler, query):
    text = where_sql(registry, compiler, "Patient", query)
    assert "NOT (EXISTS (SELECT 1" in text and ".pid = resource.pid" in text


def test_missing_false_is_in_any_row(registry, compiler):
    text = where_sql(registry, compiler, "Patient", "active:missing=false")
    assert "EXISTS (SELECT 1" in text and "NOT (EXISTS" not in text


def test_composite_missing_looks_at_its_first_component(registry, compiler, keys):
    stmt = compiler.page(request(registry, "Observation", "component-code-value-quantity:missing=true"))
    text = sql(stmt)
    assert "NOT (EXISTS (SELECT 1 \nFROM idx_token" in text
    sp = keys.lookup("Observation", "component-code-value-quantity~0")
    assert sp in stmt.compile().params.values()


def test_token_not_is_not_in_the_matching_rows(registry, compiler):
    text = where_sql(registry, compiler, "Condition", "code:not=I10")
    assert "NOT (EXISTS (SELECT 1 \nFROM idx_token" in text
    assert "resource.pid IN" not in text  # a negation never drives the query


def test_or_values_are_ored_and_parameters_anded(registry, compiler):
    text = where_sql(registry, compiler, "Condition", "code=I10,E11.9&subject=Patient/wang")
    assert " OR " in text
    # one filter drives (the reference, the more selective kind), the other is checked per row
    assert "resource.pid IN (SELECT idx_reference.pid" in text
    assert "EXISTS (SELECT 1 \nFROM idx_token \nWHERE idx_token.pid = resource.pid" in text


def test_chain_joins_the_target_resource(registry, compiler):
    text = where_sql(registry, compiler, "Observation", "encounter.service-provider.name=东风")
    # each link: the ids of matching targets, looked up in the reference index
    assert text.count("idx_reference.target_id IN (SELECT resource_") == 2
    assert "target_type" in text
    assert "idx_string" in text


def test_reverse_chain_selects_referring_target_ids(registry, compiler):
    text = where_sql(registry, compiler, "Patient", "_has:Observation:patient:code=1558-6")
    assert "resource.res_id IN (SELECT idx_reference.target_id" in text
    assert "JOIN resource AS resource_" in text


def test_sort_uses_lowest_or_highest_value_and_missing_last(registry, compiler):
    stmt = compiler.page(request(registry, "Observation", "_sort=-date,code"))
    text = sql(stmt, postgresql.dialect())
    assert "max(idx_date_1.high)" in text and "min(idx_token_1.code)" in text
    # looked up per matching row, not grouped over the whole index
    assert "GROUP BY" not in text and text.count(".pid = resource.pid") == 2
    assert "DESC NULLS LAST" in text and "ASC NULLS LAST" in text
    assert text.index("DESC NULLS LAST") < text.index("ASC NULLS LAST") < text.index("resource.pid \n LIMIT")


def test_the_same_sort_parameter_twice_still_compiles(registry, compiler):
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        text = sql(compiler.page(request(registry, "Observation", "_sort=date,-date")), dialect)
        assert "min(idx_date_1.low)" in text and "max(idx_date_2.high)" in text


@contextlib.contextmanager
def indexed(compiler, code_pids: range, subject_pids: range):
    """A connection to an in-memory index: Observations ``code_pids`` coded 85354-9 and
    ``subject_pids`` about Patient/p1."""
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    patient = compiler.keys.lookup("Observation", "subject")
    code = compiler.keys.lookup("Observation", "code")
    with engine.begin() as conn:
        conn.execute(insert(INDEX_TABLES["token"]), [
            {"sp": code, "pid": pid, "grp": None, "system": LOINC, "code": "85354-9", "text": None,
             "type_system": None, "type_code": None} for pid in code_pids])
        conn.execute(insert(INDEX_TABLES["reference"]), [
            {"sp": patient, "pid": pid, "grp": None, "target_type": "Patient", "target_id": "p1", "url": None,
             "identifier_system": None, "identifier_value": None} for pid in subject_pids])
        yield conn


def driver(registry, compiler, conn, query: str):
    """The position in ``query`` of the filter that drives it."""
    criteria = [compiler.criterion("Observation", f) for f in request(registry, "Observation", query).filters]
    return criteria.index(compiler.choose_driver(criteria, conn)[0])


def test_the_driver_is_the_filter_with_fewest_rows(registry, compiler):
    """With a connection, the driver is chosen by counting a bounded sample of each filter."""
    with indexed(compiler, range(1, 301), range(5, 7)) as conn:
        assert driver(registry, compiler, conn, "code=85354-9&subject=Patient/p1") == 1
        assert driver(registry, compiler, conn, "subject=Patient/p1&code=nothing-has-this") == 1


def test_when_every_candidate_is_broad_at_first_sight_a_wider_count_decides(registry, compiler):
    """Both filters pass the first sample; counting further shows the code is the narrower one,
    though a patient reference ranks first."""
    with indexed(compiler, range(1, SAMPLE + 51), range(1, SAMPLE + 101)) as conn:
        assert driver(registry, compiler, conn, "subject=Patient/p1&code=85354-9") == 1


def test_a_driver_whose_first_sample_holds_all_its_rows_is_named_by_its_pids(registry, compiler):
    """The subject's two rows fit in the first sample: the query names pids 5 and 6 rather than
    selecting them again, and still finds what the query with the select finds."""
    with indexed(compiler, range(1, 301), range(5, 7)) as conn:
        req = request(registry, "Observation", "code=85354-9&subject=Patient/p1")
        named = compiler.page(req, conn=conn)
        assert sorted(named.compile().params["pid_1"]) == [5, 6]
        assert "idx_reference" not in sql(named)  # the subject's rows are not read again
        rows = [{"pid": pid, "res_type": "Observation", "res_id": f"o{pid}", "version": 1,
                 "last_updated": datetime(2026, 1, 1), "deleted": False, "content": "{}"} for pid in range(1, 301)]
        conn.execute(insert(resource), rows)
        assert list(conn.execute(named).scalars()) == list(conn.execute(compiler.page(req)).scalars()) == [5, 6]


def test_a_broad_driver_is_still_selected(registry, compiler):
    """Both filters pass the first sample: the driver stays a select (its pids are not all known)."""
    with indexed(compiler, range(1, SAMPLE + 51), range(1, SAMPLE + 101)) as conn:
        text = sql(compiler.page(request(registry, "Observation", "subject=Patient/p1&code=85354-9"), conn=conn))
        assert "resource.pid IN (SELECT idx_token.pid" in text


def test_an_id_filter_leaves_driving_to_the_id_index(registry, compiler):
    text = where_sql(registry, compiler, "Observation", "_id=a,b&code=85354-9")
    assert "resource.res_type = " in text and "resource.res_id IN" in text
    assert "resource.pid IN" not in text


def test_page_and_count(registry, compiler):
    req = request(registry, "Patient", "name=王&_count=3&_offset=6")
    params = compiler.page(req).compile().params
    assert params["param_1"] == 3 and params["param_2"] == 6
    assert "count(*)" in sql(count_of(compiler.where(req)))


def test_a_parameter_never_indexed_matches_no_row(registry):
    compiler = SearchCompiler(Keys(), BASE)  # no keys at all
    stmt = compiler.page(request(registry, "Patient", "name=王"))
    assert -1 in stmt.compile().params.values()


QUERIES = [
    ("Patient", "name=王秀英"), ("Patient", "name:exact=王秀英"), ("Patient", "name:contains=秀"),
    ("Patient", f"identifier={RID}|110101195001011234"), ("Patient", f"identifier={RID}|"),
    ("Patient", "identifier=|110101195001011234"), ("Patient", "gender:not=male"), ("Patient", "gender:text=女"),
    ("Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|NNCHN|1101"),
    ("Patient", "active=true"), ("Patient", "active:missing=true"),
    *[("Patient", f"birthdate={prefix}1962-03") for prefix in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")],
    ("Observation", "date=2024-03-10T09:30:00+08:00"), ("Encounter", "date=ge2024-03"),
    ("RiskAssessment", "probability=eq100"), ("RiskAssessment", "probability=ap0.25"),
    ("Observation", f"value-quantity=gt7|{UCUM}|mmol/L"), ("Observation", "value-quantity=lt126||mg/dL"),
    ("Observation", "value-quantity=3|http://county.example.cn/units|pack"), ("Observation", "value-quantity=5.4"),
    ("Observation", "subject=Patient/wang"), ("Observation", "subject=wang"), ("Observation", "subject:Patient=wang"),
    ("Observation", f"subject={BASE}/Patient/wang"), ("Observation", f"subject:identifier={RID}|110101195001011234"),
    ("Questionnaire", "url=http://county.example.cn/fhir/Questionnaire/htn"),
    ("Questionnaire", "url:below=http://county.example.cn/fhir"), ("ValueSet", "url:above=http://county.example.cn/fhir/ValueSet/a/b"),
    ("Observation", f"code-value-quantity={LOINC}|1558-6$gt100"),
    ("Observation", "component-code-value-quantity=8480-6$gt140,8462-4$gt90"),
    ("Observation", f"subject:Patient.identifier={RID}|1"), ("Observation", "patient.organization.name=县"),
    ("Organization", "_has:Patient:organization:_has:Observation:patient:code=14771-0"),
    ("Patient", "_id=wang,li"), ("Patient", "_id:not=wang"), ("Patient", "_lastUpdated=gt2024-03-10T09:30:00Z"),
    ("Patient", "_tag=http://county.example.cn/tags|htn"), ("Patient", "_profile=http://county.example.cn/sd/p"),
    ("Patient", "_security=R"), ("Patient", "_sort=-birthdate,name,_id,-_lastUpdated,organization"),
    ("Observation", "_sort=value-quantity,-date,code"),
]


@pytest.mark.parametrize(("rtype", "query"), QUERIES)
@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"])
def test_both_dialects_compile(registry, compiler, rtype, query, dialect):
    req = request(registry, rtype, [tuple(q.split("=", 1)) for q in query.split("&")])
    assert req.ignored == ()
    assert "SELECT" in sql(compiler.page(req), dialect)
    assert "count(*)" in sql(count_of(compiler.where(req)), dialect)
    # literal rendering too (what a DBA pastes into psql): every value is a bindable literal
    compiled = compiler.page(req).compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    assert "SELECT" in str(compiled)


# ---- malformed values: 400 naming the parameter ---------------------------------------------


@pytest.mark.parametrize(("rtype", "name", "value"), [
    ("Observation", "date", "notadate"),
    ("Observation", "date", "2024-13-01"),
    ("Patient", "birthdate", "ge2024-02-30"),
    ("Patient", "birthdate", "gt"),
    ("Patient", "birthdate", "9999-12-31T23:59:59-08:00"),  # past the end of time in UTC
    ("Observation", "value-quantity", "abc"),
    ("Observation", "value-quantity", "gt7|mmol/L"),  # needs number|system|code
    ("Observation", "value-quantity", "NaN"),
    ("RiskAssessment", "probability", "1e99999999999"),
    ("RiskAssessment", "probability", "1_000"),
    ("Observation", "code", "a|b|c"),
    ("Patient", "identifier:of-type", "NNCHN|110"),
    ("Observation", "component-code-value-quantity", "8480-6$"),
    ("Patient", "_lastUpdated", "yesterday"),
])
def test_malformed_value_is_invalid_and_names_the_parameter(registry, compiler, rtype, name, value):
    req = request(registry, rtype, [(name, value)])
    with pytest.raises(InvalidRequest) as err:
        compiler.page(req)
    assert repr(name.split(":")[0]) in err.value.message


def test_composite_without_dollar_is_invalid_and_names_the_parameter(registry, compiler):
    req = request(registry, "Observation", [("component-code-value-quantity", "8462-4")])
    with pytest.raises(InvalidRequest, match="component-code-value-quantity needs 2 values"):
        compiler.page(req)


def test_malformed_value_inside_a_chain_or_has_is_invalid(registry, compiler):
    for rtype, pairs in [("Observation", [("patient.birthdate", "notadate")]),
                         ("Patient", [("_has:Observation:patient:value-quantity", "abc")])]:
        with pytest.raises(InvalidRequest):
            compiler.page(request(registry, rtype, pairs))


@pytest.mark.parametrize("value", ["ap9999", "ap0001", "gt9999-12-31", "lt0001-01-01"])
def test_dates_at_the_ends_of_time_compile(registry, compiler, value):
    compiler.page(request(registry, "Patient", [("birthdate", value)]))


# ---- what the conditions mean, on a small SQLite database ------------------------------------


class MiniStore:
    """Resources indexed by the real indexer into the real schema, in memory."""

    def __init__(self, registry):
        self.registry = registry
        self.engine = create_engine("sqlite://")
        metadata.create_all(self.engine)
        self.keys = Keys()
        self.indexer = Indexer(registry)
        self.compiler = SearchCompiler(self.keys, BASE)
        self._pid = itertools.count(1)

    def add(self, res: dict, deleted: bool = False) -> None:
        pid = next(self._pid)
        with self.engine.begin() as conn:
            conn.execute(insert(resource).values(
                pid=pid, res_type=res["resourceType"], res_id=res["id"], version=1,
                last_updated=datetime(2024, 3, 10, 1, 30), deleted=deleted, content="{}",
            ))
            if deleted:
                return
            for row in self.indexer.rows(res):
                sp = self.keys.get(res["resourceType"], row.code)
                conn.execute(insert(INDEX_TABLES[row.kind]).values(sp=sp, pid=pid, grp=row.grp, **row.values))

    def ids(self, rtype: str, query: str | list[tuple[str, str]]) -> set[str]:
        stmt = self.compiler.page(request(self.registry, rtype, query))
        with self.engine.connect() as conn:
            pids = [r.pid for r in conn.execute(stmt)]
            rows = conn.execute(select(resource.c.pid, resource.c.res_id).where(resource.c.pid.in_(pids)))
            return {r.res_id for r in rows}


def patient(pid, family, given, birth, **extra):
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family, "given": [given]}],
            "birthDate": birth, **extra}


def bp(oid, subject, systolic, diastolic):
    def component(code, value):
        return {"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "subject": {"reference": f"Patient/{subject}"},
            "component": [component("8480-6", systolic), component("8462-4", diastolic)]}


def glucose(oid, loinc, value, unit):
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": loinc}]},
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


@pytest.fixture(scope="module")
def mini(registry) -> MiniStore:
    store = MiniStore(registry)
    store.add(patient("wang", "王", "秀英", "1950-01-01", active=True, gender="female"))
    store.add(patient("li", "李", "建国", "1962-03-15", active=True, gender="male"))
    store.add(patient("zhang", "Zhāng", "Wěi", "1970", active=False))
    store.add(patient("liu", "刘", "芳", "1985-06"))
    store.add(patient("gone", "王", "丽", "1950-01-01"), deleted=True)
    store.add(bp("bp-wang", "wang", 185, 95))
    store.add(bp("bp-li", "li", 200, 120))
    store.add(glucose("glu-wang", "1558-6", 140, "mg/dL"))
    store.add(glucose("glu-li", "14771-0", 5.2, "mmol/L"))
    store.add(glucose("glu-zhang", "14771-0", 8.1, "mmol/L"))
    # a systolic pressure as a local system sends it (unit text, no system) and a local unit
    store.add({**glucose("sbp-text", "8480-6", 150, "mmHg"), "valueQuantity": {"value": 150, "unit": "mmHg"}})
    store.add({**glucose("packs", "8664-9", 3, "pack"),
               "valueQuantity": {"value": 3, "unit": "包", "system": "http://county.example.cn/units", "code": "pack"}})
    for rid, probability in [("ra-high", 99.6), ("ra-edge", 99.4), ("ra-low", 0.25)]:
        store.add({"resourceType": "RiskAssessment", "id": rid, "status": "final",
                   "subject": {"reference": "Patient/wang"}, "prediction": [{"probabilityDecimal": probability}]})
    for qid, url in [("q-htn", "http://county.example.cn/fhir/Questionnaire/htn"),
                     ("q-dm", "http://county.example.cn/fhir/Questionnaire/dm"),
                     ("q-underscore", "http://county.example.cn/fhir/Questionnaire/d_"),
                     ("q-other", "http://other.example.org/Questionnaire/htn")]:
        store.add({"resourceType": "Questionnaire", "id": qid, "status": "active", "url": url})
    # answers: to a questionnaire by canonical URL (with a version) or by id; about a patient
    # named by identifier only (a logical reference)
    store.add({"resourceType": "QuestionnaireResponse", "id": "qr-htn", "status": "completed",
               "questionnaire": "http://county.example.cn/fhir/Questionnaire/htn|2",
               "subject": {"identifier": {"system": RID, "value": "110101195001011234"}}})
    store.add({"resourceType": "QuestionnaireResponse", "id": "qr-dm", "status": "completed",
               "questionnaire": "http://county.example.cn/fhir/Questionnaire/dm",
               "subject": {"reference": "Patient/wang"}})
    return store


@pytest.mark.parametrize(("query", "expected"), [
    ("birthdate=1970", {"zhang"}),
    ("birthdate=1970-05-01", set()),  # a year is not within a day
    ("birthdate=eq1962", {"li"}),
    ("birthdate=ne1950-01-01", {"li", "zhang", "liu"}),
    ("birthdate=gt1962-03-15", {"zhang", "liu"}),
    ("birthdate=ge1962-03-15", {"li", "zhang", "liu"}),
    ("birthdate=lt1962-03", {"wang"}),
    ("birthdate=le1962-03", {"wang", "li"}),
    ("birthdate=sa1962", {"zhang", "liu"}),
    ("birthdate=eb1970", {"wang", "li"}),
    ("birthdate=ap1985", {"liu"}),
    ("birthdate=1985-06", {"liu"}),
    ("birthdate=1985-06-15", set()),
])
def test_date_prefixes_against_values_of_different_precision(mini, query, expected):
    assert mini.ids("Patient", query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("probability=100", {"ra-high"}),  # 100 means [99.5, 100.5]
    ("probability=eq100", {"ra-high"}),
    ("probability=99", {"ra-edge"}),
    ("probability=99.4", {"ra-edge"}),
    ("probability=ne100", {"ra-edge", "ra-low"}),
    ("probability=gt99.5", {"ra-high"}),
    ("probability=lt1", {"ra-low"}),
    ("probability=le0.25", {"ra-low"}),
    ("probability=ge99.4", {"ra-high", "ra-edge"}),
    ("probability=ap0.24", {"ra-low"}),
    ("probability=0.25,99.6", {"ra-high", "ra-low"}),
])
def test_number_precision_and_prefixes(mini, query, expected):
    assert mini.ids("RiskAssessment", query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    (f"value-quantity=gt7|{UCUM}|mmol/L", {"glu-wang", "glu-zhang"}),  # 140 mg/dL of glucose is 7.8 mmol/L
    (f"value-quantity=lt126|{UCUM}|mg/dL", {"glu-li"}),  # 5.2 mmol/L is 94 mg/dL
    (f"value-quantity=140|{UCUM}|mg/dL", {"glu-wang"}),
    ("value-quantity=5.2||mmol/L", {"glu-li"}),
    (f"value-quantity=gt1|{UCUM}|g/L", {"glu-wang", "glu-zhang"}),  # 1.4 g/L; 8.1 mmol/L = 1.46 g/L
    # "mmHg" without a system is read as mm[Hg], as the index reads a stored unit
    ("value-quantity=gt140||mmHg", {"sbp-text"}),
    (f"value-quantity=gt19|{UCUM}|kPa", {"sbp-text"}),  # 150 mmHg is 20.0 kPa
    ("value-quantity=3|http://county.example.cn/units|pack", {"packs"}),  # a local unit: compared as sent
    ("value-quantity=3||pack", {"packs"}),
    ("value-quantity=3", {"packs"}),
])
def test_quantity_compares_across_units(mini, query, expected):
    assert mini.ids("Observation", query) == expected


@pytest.mark.parametrize(("query", "expected", "index"), [
    ("questionnaire=http://county.example.cn/fhir/Questionnaire/htn", {"qr-htn"}, "ix_idx_reference_sp_url"),
    ("questionnaire=http://county.example.cn/fhir/Questionnaire/dm", {"qr-dm"}, "ix_idx_reference_sp_url"),
    (f"subject:identifier={RID}|110101195001011234", {"qr-htn"}, "ix_idx_reference_sp_identifier_value"),
    ("subject:identifier=110101195001011234", {"qr-htn"}, "ix_idx_reference_sp_identifier_value"),
    ("subject=Patient/wang", {"qr-dm"}, "ix_idx_reference_sp_target_id_target_type"),
])
def test_references_by_url_and_identifier_are_found_through_partial_indexes(mini, query, expected, index):
    """(sp, url) and (sp, identifier_value) hold only the rows that have one: most references
    are Type/id and cost those indexes nothing."""
    assert mini.ids("QuestionnaireResponse", [tuple(query.split("=", 1))]) == expected
    stmt = mini.compiler.page(request(mini.registry, "QuestionnaireResponse", [tuple(query.split("=", 1))]))
    sql = str(stmt.compile(mini.engine, compile_kwargs={"literal_binds": True}))
    with mini.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        with_url = conn.exec_driver_sql(
            "SELECT count(*) FROM idx_reference INDEXED BY ix_idx_reference_sp_url WHERE url IS NOT NULL").scalar()
        total = conn.exec_driver_sql("SELECT count(*) FROM idx_reference").scalar()
    assert index in plan, plan
    assert 0 < with_url < total


def test_a_local_unit_is_searched_among_the_rows_without_a_canonical_unit_only(mini):
    """Rows in a UCUM unit are only in the canonical index; the partial (sp, code, value) index
    holds the others, and a search in a local unit reads only those (before, every quantity row
    of the parameter)."""
    if mini.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's plan")
    stmt = mini.compiler.page(request(mini.registry, "Observation", "value-quantity=gt2|http://county.example.cn/units|pack"))
    sql = str(stmt.compile(mini.engine, compile_kwargs={"literal_binds": True}))
    with mini.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        in_partial = conn.exec_driver_sql(
            "SELECT count(*) FROM idx_quantity INDEXED BY ix_idx_quantity_sp_code_value "
            "WHERE canonical_code IS NULL").scalar()
        uncanonical = conn.exec_driver_sql("SELECT count(*) FROM idx_quantity WHERE canonical_code IS NULL").scalar()
        total = conn.exec_driver_sql("SELECT count(*) FROM idx_quantity").scalar()
    assert "canonical_code=?" in plan or "ix_idx_quantity_sp_code_value" in plan, plan
    assert 0 < in_partial == uncanonical < total  # the packs' rows, not the glucose and pressures


@pytest.mark.parametrize(("query", "expected"), [
    ("component-code-value-quantity=8480-6$gt180", {"bp-wang", "bp-li"}),
    ("component-code-value-quantity=8462-4$gt180", set()),  # wang's 185 is the systolic, not the diastolic
    ("component-code-value-quantity=8462-4$gt100", {"bp-li"}),
    (f"component-code-value-quantity={LOINC}|8462-4$gt90|{UCUM}|mm[Hg]", {"bp-wang", "bp-li"}),
    ("component-code-value-quantity=8462-4$lt100,8480-6$ge200", {"bp-wang", "bp-li"}),
    ("code-value-quantity=1558-6$gt100", {"glu-wang"}),
    (f"code-value-quantity=14771-0$gt7|{UCUM}|mmol/L", {"glu-zhang"}),
])
def test_composite_components_come_from_one_element(mini, query, expected):
    assert mini.ids("Observation", [tuple(query.split("=", 1))]) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("name=王", {"wang"}),  # the deleted 王丽 is never found
    ("name=王秀英", {"wang"}),
    ("name=秀英", {"wang"}),
    ("name=zhang", {"zhang"}),
    ("name=WEI", {"zhang"}),
    ("name:exact=Zhāng", {"zhang"}),
    ("name:exact=zhang", set()),
    ("name:contains=建", {"li"}),
    ("active=true", {"wang", "li"}),
    ("active:not=true", {"zhang", "liu"}),
    ("active:missing=true", {"liu"}),
    ("gender=female,male", {"wang", "li"}),
    ("_id=wang,zhang,gone", {"wang", "zhang"}),
    ("_id:not=wang", {"li", "zhang", "liu"}),
])
def test_string_token_and_id(mini, query, expected):
    assert mini.ids("Patient", query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("subject=Patient/wang", {"ra-high", "ra-edge", "ra-low"}),
    ("subject=wang", {"ra-high", "ra-edge", "ra-low"}),
    ("subject:Patient=wang", {"ra-high", "ra-edge", "ra-low"}),
    ("subject:Group=wang", set()),
    ("subject:Group=Patient/wang", set()),
    (f"subject={BASE}/Patient/wang", {"ra-high", "ra-edge", "ra-low"}),
    ("subject=Patient/li", set()),
])
def test_reference_forms(mini, query, expected):
    assert mini.ids("RiskAssessment", query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("url=http://county.example.cn/fhir/Questionnaire/htn", {"q-htn"}),
    ("url:below=http://county.example.cn/fhir", {"q-htn", "q-dm", "q-underscore"}),
    ("url:above=http://county.example.cn/fhir/Questionnaire/htn/version/2", {"q-htn"}),
    ("url=http://county.example.cn/fhir", set()),
    ("url:above=http://county.example.cn/fhir/Questionnaire/htn", {"q-htn"}),
    ("url:above=http://county.example.cn/fhir/Questionnaire/ht", set()),
    ("url:above=http://county.example.cn/fhir/Questionnaire/d_m/1", {"q-underscore"}),
    ("url:above=http://county.example.cn/fhir/Questionnaire/dXm/1", set()),  # "_" is not a wildcard
    ("url:below=http://county.example.cn/fhir/Questionnaire/_", set()),
])
def test_uri_exact_below_above(mini, query, expected):
    assert mini.ids("Questionnaire", query) == expected


def test_chain_and_reverse_chain(mini):
    assert mini.ids("RiskAssessment", "subject:Patient.name=王秀英") == {"ra-high", "ra-edge", "ra-low"}
    assert mini.ids("RiskAssessment", "subject:Patient.name=李") == set()
    assert mini.ids("Patient", "_has:RiskAssessment:subject:probability=lt1") == {"wang"}
    assert mini.ids("Patient", "_has:RiskAssessment:subject:probability=gt100") == set()
