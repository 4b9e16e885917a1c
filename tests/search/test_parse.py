"""Parsing a FHIR search query into frozen dataclasses (fhir_server.search.parse).

No database here: the registry is built from the vendored profiles, and every assertion is on
the parsed ``SearchRequest`` (or the InvalidRequest a malformed query raises).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fhir_server.errors import InvalidRequest, UnknownParameter
from fhir_server.search.parse import (
    MAX_CHAIN_DEPTH,
    MAX_VALUES,
    Filter,
    Include,
    Link,
    ReverseChain,
    SearchRequest,
    SortKey,
    Value,
    parse_search,
    split_escaped,
    split_prefix,
    unescape,
)
from fhir_server.search.registry import SearchParamRegistry

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
RID = "urn:oid:2.16.156.10011.1.3"


@pytest.fixture(scope="module")
def registry() -> SearchParamRegistry:
    return SearchParamRegistry.from_profiles(PROFILES)


def parse(registry, rtype: str, query: list[tuple[str, str]] | str, **kw) -> SearchRequest:
    if isinstance(query, str):
        pairs = [tuple(p.split("=", 1)) for p in query.split("&")] if query else []
    else:
        pairs = query
    return parse_search(registry, rtype, pairs, **kw)


def only_filter(request: SearchRequest) -> Filter:
    assert len(request.filters) == 1, request.filters
    return request.filters[0]


def p(registry, rtype, code):
    param = registry.get(rtype, code)
    assert param is not None, f"{rtype}.{code} is not in the registry"
    return param


# ---- the result is plain frozen data ---------------------------------------------------------


def test_simple_token_parses_to_a_filter_dataclass(registry):
    request = parse(registry, "Observation", "code=http://loinc.org|85354-9")
    assert request == SearchRequest(
        resource_type="Observation",
        filters=(Filter(p(registry, "Observation", "code"), None, (Value("http://loinc.org|85354-9", "eq"),)),),
    )
    assert request.count == 20 and request.offset == 0 and request.sort == () and request.includes == ()


def test_parsed_request_is_frozen(registry):
    request = parse(registry, "Patient", "name=王")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.count = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.filters[0].modifier = "exact"  # type: ignore[misc]


def test_no_parameters_is_an_empty_request(registry):
    assert parse(registry, "Patient", []) == SearchRequest("Patient")


def test_defaults_come_from_the_caller(registry):
    request = parse(registry, "Patient", [], default_count=7)
    assert request.count == 7


# ---- OR lists, AND by repetition, escapes ---------------------------------------------------


def test_comma_is_or_within_one_filter(registry):
    f = only_filter(parse(registry, "Condition", "code=I10,E11.9"))
    assert f.values == (Value("I10"), Value("E11.9"))


def test_repeated_parameter_is_two_filters_anded(registry):
    request = parse(registry, "Patient", "name=王&name=秀英")
    assert [f.values for f in request.filters] == [(Value("王"),), (Value("秀英"),)]


def test_escaped_comma_is_not_a_separator(registry):
    f = only_filter(parse(registry, "Patient", [("name", r"Wang\, Xiuying,Li")]))
    assert [v.raw for v in f.values] == [r"Wang, Xiuying", "Li"]


def test_split_escaped_keeps_other_escapes_for_the_next_split():
    assert split_escaped(r"a\,b,c", ",") == ["a,b", "c"]
    assert split_escaped(r"a\|b|c", ",") == [r"a\|b|c"]
    assert split_escaped(r"a\|b|c", "|") == ["a|b", "c"]
    assert split_escaped(r"8480-6\$x$gt5", "$") == ["8480-6$x", "gt5"]
    assert unescape(r"a\$b\|c\,d\\e") == r"a$b|c,d\e"


def test_empty_value_is_invalid_and_names_the_parameter(registry):
    with pytest.raises(InvalidRequest, match="'name'"):
        parse(registry, "Patient", [("name", "")])
    with pytest.raises(InvalidRequest, match="'code'"):
        parse(registry, "Observation", [("code", ",")])


def test_too_many_or_values_is_invalid(registry):
    values = ",".join(f"c{i}" for i in range(MAX_VALUES))
    assert len(only_filter(parse(registry, "Observation", [("code", values)])).values) == MAX_VALUES
    with pytest.raises(InvalidRequest, match="'code'"):
        parse(registry, "Observation", [("code", values + ",one-more")])


def test_nul_character_is_invalid(registry):
    with pytest.raises(InvalidRequest, match="NUL"):
        parse(registry, "Patient", [("name", "王\x00")])
    with pytest.raises(InvalidRequest, match="NUL"):
        parse(registry, "Patient", [("na\x00me", "王")])


# ---- prefixes -----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"])
def test_every_prefix_on_a_date(registry, prefix):
    f = only_filter(parse(registry, "Patient", f"birthdate={prefix}1962-03"))
    assert f.values == (Value("1962-03", prefix),)


def test_date_without_prefix_is_eq(registry):
    f = only_filter(parse(registry, "Observation", [("date", "2024-03-10T09:30:00+08:00")]))
    assert f.values == (Value("2024-03-10T09:30:00+08:00", "eq"),)


def test_prefix_per_value_in_an_or_list(registry):
    f = only_filter(parse(registry, "RiskAssessment", "probability=lt0.1,gt0.9,0.5"))
    assert f.values == (Value("0.1", "lt"), Value("0.9", "gt"), Value("0.5", "eq"))


def test_quantity_prefix_and_unit_stay_together(registry):
    f = only_filter(parse(registry, "Observation", "value-quantity=gt7|http://unitsofmeasure.org|mmol/L"))
    assert f.values == (Value("7|http://unitsofmeasure.org|mmol/L", "gt"),)


def test_negative_number_keeps_its_sign(registry):
    assert split_prefix("number", "-5") == ("eq", "-5")
    assert split_prefix("number", "ne-5") == ("ne", "-5")
    assert split_prefix("quantity", "le.5") == ("le", ".5")


def test_prefix_letters_are_not_split_off_other_types_or_non_numbers(registry):
    # a string that starts with a prefix's letters is just a string
    f = only_filter(parse(registry, "Patient", "family=gentry"))
    assert f.values == (Value("gentry", "eq"),)
    assert split_prefix("token", "ge2024") == ("eq", "ge2024")
    assert split_prefix("date", "gtx") == ("eq", "gtx")  # no digit after: not a prefix (and not a date)
    assert split_prefix("number", "apple") == ("eq", "apple")


# ---- modifiers ----------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "modifier"), [
    ("name:exact=王秀英", "exact"),
    ("name:contains=秀", "contains"),
    ("identifier:not=123", "not"),
    ("gender:text=female", "text"),
    ("identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|NNCHN|110", "of-type"),
    ("organization:Organization=town", "Organization"),
    (f"general-practitioner:identifier={RID}|1", "identifier"),
])
def test_supported_modifiers_are_kept(registry, query, modifier):
    assert only_filter(parse(registry, "Patient", [tuple(query.split("=", 1))])).modifier == modifier


def test_uri_below_and_above(registry):
    assert only_filter(parse(registry, "ValueSet", "url:below=http://county.example.cn")).modifier == "below"
    assert only_filter(parse(registry, "Questionnaire", "url:above=http://x/y")).modifier == "above"


@pytest.mark.parametrize(("rtype", "query", "code"), [
    ("Patient", "name:not=王", "name"),  # :not is for tokens
    ("Patient", "birthdate:exact=1950", "birthdate"),
    ("Observation", "code:contains=85", "code"),
    ("Observation", "subject:Banana=1", "subject"),  # not a resource type
    ("Patient", "active:foo=true", "active"),
])
def test_unsupported_modifier_is_invalid_and_names_the_parameter(registry, rtype, query, code):
    with pytest.raises(InvalidRequest, match=f"'{code}'") as err:
        parse(registry, rtype, query)
    assert not isinstance(err.value, UnknownParameter)


def test_missing_takes_true_or_false(registry):
    f = only_filter(parse(registry, "Patient", "active:missing=true"))
    assert (f.modifier, f.values) == ("missing", (Value("true"),))
    assert only_filter(parse(registry, "Observation", "value-quantity:missing=false")).values == (Value("false"),)
    with pytest.raises(InvalidRequest, match="birthdate:missing"):
        parse(registry, "Patient", "birthdate:missing=yes")


# ---- chains -------------------------------------------------------------------------------


def test_chain_with_type_modifier(registry):
    f = only_filter(parse(registry, "Observation", f"subject:Patient.identifier={RID}|110101195001011234"))
    assert f == Filter(
        p(registry, "Patient", "identifier"), None, (Value(f"{RID}|110101195001011234"),),
        (Link(p(registry, "Observation", "subject"), "Patient"),),
    )


def test_chain_through_a_single_target_reference_needs_no_type(registry):
    f = only_filter(parse(registry, "Observation", "patient.name=王"))
    assert f.chain == (Link(p(registry, "Observation", "patient"), "Patient"),)
    assert f.param == p(registry, "Patient", "name")


def test_chain_through_an_ambiguous_reference_is_invalid(registry):
    with pytest.raises(InvalidRequest, match="subject.name"):
        parse(registry, "Observation", "subject.name=王")


def test_two_level_chain(registry):
    f = only_filter(parse(registry, "Observation", "encounter.service-provider.name=东风"))
    assert f.chain == (
        Link(p(registry, "Observation", "encounter"), "Encounter"),
        Link(p(registry, "Encounter", "service-provider"), "Organization"),
    )
    assert f.param == p(registry, "Organization", "name")
    assert f.values == (Value("东风"),)


def test_chain_keeps_the_modifier_of_the_last_parameter(registry):
    f = only_filter(parse(registry, "Observation", "subject:Patient.name:exact=王秀英"))
    assert (f.param.code, f.modifier) == ("name", "exact")


def test_chain_keeps_date_prefixes(registry):
    f = only_filter(parse(registry, "Observation", "patient.birthdate=lt1960"))
    assert f.values == (Value("1960", "lt"),)


def test_chain_through_a_non_reference_is_invalid(registry):
    with pytest.raises(InvalidRequest, match="not a reference"):
        parse(registry, "Observation", "code.name=x")


def test_chain_to_an_unsupported_type_is_invalid(registry):
    with pytest.raises(InvalidRequest, match="Banana"):
        parse(registry, "Observation", "subject:Banana.name=x")


def test_chain_depth_is_limited(registry):
    deep_ok = "subject:Patient.organization" + ".partof" * (MAX_CHAIN_DEPTH - 2) + ".name"
    assert len(only_filter(parse(registry, "Observation", [(deep_ok, "x")])).chain) == MAX_CHAIN_DEPTH
    too_deep = "subject:Patient.organization" + ".partof" * (MAX_CHAIN_DEPTH - 1) + ".name"
    with pytest.raises(InvalidRequest, match="chains more than"):
        parse(registry, "Observation", [(too_deep, "x")])


def test_unknown_parameter_at_the_end_of_a_chain_is_ignored(registry):
    request = parse(registry, "Observation", "patient.shoe-size=42")
    assert request.filters == ()
    assert len(request.ignored) == 1 and "shoe-size" in request.ignored[0]


# ---- _has ---------------------------------------------------------------------------------


def test_reverse_chain(registry):
    f = only_filter(parse(registry, "Patient", "_has:Observation:patient:code=1558-6"))
    assert f == ReverseChain(
        "Observation", p(registry, "Observation", "patient"),
        Filter(p(registry, "Observation", "code"), None, (Value("1558-6"),)),
    )


def test_nested_reverse_chain(registry):
    f = only_filter(parse(registry, "Organization", "_has:Patient:organization:_has:Observation:patient:code=14771-0"))
    assert isinstance(f, ReverseChain) and f.source_type == "Patient"
    assert f.reference == p(registry, "Patient", "organization")
    assert isinstance(f.inner, ReverseChain) and f.inner.source_type == "Observation"
    assert f.inner.inner == Filter(p(registry, "Observation", "code"), None, (Value("14771-0"),))


def test_reverse_chain_inner_modifier_and_prefix(registry):
    f = only_filter(parse(registry, "Patient", "_has:Observation:patient:value-quantity=gt7|http://unitsofmeasure.org|mmol/L"))
    assert f.inner.values == (Value("7|http://unitsofmeasure.org|mmol/L", "gt"),)
    g = only_filter(parse(registry, "Patient", "_has:Condition:subject:code:not=I10"))
    assert g.inner.modifier == "not"


@pytest.mark.parametrize(("name", "message"), [
    ("_has:Observation", "must have the form"),
    ("_has:Observation:patient", "must have the form"),
    ("_has:Banana:patient:code", "Banana"),
    ("_has:Observation:code:code", "not a reference"),
])
def test_malformed_reverse_chain_is_invalid(registry, name, message):
    with pytest.raises(InvalidRequest, match=message):
        parse(registry, "Patient", [(name, "x")])


def test_reverse_chain_depth_is_limited(registry):
    name = "_has:Observation:has-member:" * (MAX_CHAIN_DEPTH + 1) + "code"
    with pytest.raises(InvalidRequest, match="chains more than"):
        parse(registry, "Observation", [(name, "x")])


# ---- result parameters --------------------------------------------------------------------


def test_count_offset_and_cap(registry):
    request = parse(registry, "Patient", "_count=3&_offset=6")
    assert (request.count, request.offset) == (3, 6)
    assert parse(registry, "Patient", "_count=5000", max_count=1000).count == 1000
    assert parse(registry, "Patient", "_count=0").count == 0


@pytest.mark.parametrize("query", ["_count=-1", "_count=abc", "_count=1.5", "_offset=-3", "_count="])
def test_malformed_count_or_offset_is_invalid_and_names_it(registry, query):
    with pytest.raises(InvalidRequest, match=query.split("=")[0]):
        parse(registry, "Patient", query)


def test_sort_several_keys_with_direction(registry):
    request = parse(registry, "Observation", "_sort=-date,code,_id")
    assert request.sort == (
        SortKey(p(registry, "Observation", "date"), True),
        SortKey(p(registry, "Observation", "code"), False),
        SortKey(p(registry, "Observation", "_id"), False),
    )


def test_sort_by_unknown_parameter_is_ignored_and_the_other_keys_kept(registry):
    request = parse(registry, "Patient", "_sort=shoe-size,-birthdate&name=王")
    assert request.sort == (SortKey(p(registry, "Patient", "birthdate"), True),)
    assert len(request.filters) == 1
    assert len(request.ignored) == 1 and "shoe-size" in request.ignored[0]


def test_sort_by_unknown_parameter_is_an_error_when_strict(registry):
    with pytest.raises(UnknownParameter, match="shoe-size"):
        parse(registry, "Patient", "_sort=shoe-size", strict=True)


def test_sort_by_composite_is_invalid(registry):
    with pytest.raises(InvalidRequest, match="composite"):
        parse(registry, "Observation", "_sort=code-value-quantity")


def test_include_and_iterate(registry):
    request = parse(registry, "Observation",
                    "_include=Observation:encounter&_include:iterate=Encounter:service-provider")
    assert request.includes == (
        Include("Observation", p(registry, "Observation", "encounter"), None, False, False),
        Include("Encounter", p(registry, "Encounter", "service-provider"), None, True, False),
    )


def test_include_with_target_type_and_wildcards(registry):
    request = parse(registry, "Observation", "_include=Observation:subject:Patient&_include=Observation:*&_include=*")
    assert request.includes == (
        Include("Observation", p(registry, "Observation", "subject"), "Patient", False, False),
        Include("Observation", None, None, False, False),
        Include("*", None, None, False, False),
    )


def test_revinclude(registry):
    request = parse(registry, "Patient", "_revinclude=Observation:patient&_revinclude:iterate=Organization:partof")
    assert request.includes == (
        Include("Observation", p(registry, "Observation", "patient"), None, False, True),
        Include("Organization", p(registry, "Organization", "partof"), None, True, True),
    )


@pytest.mark.parametrize("query", [
    "_include=Observation",
    "_include=Observation:code",  # not a reference
    "_include=Observation:shoe",
    "_include=Banana:subject",
    "_include:deep=Observation:subject",
    "_include=a:b:c:d",
])
def test_malformed_include_is_invalid(registry, query):
    with pytest.raises(InvalidRequest, match="_include"):
        parse(registry, "Observation", query)


@pytest.mark.parametrize("mode", ["true", "text", "data", "count"])
def test_summary_modes(registry, mode):
    assert parse(registry, "Patient", f"_summary={mode}").summary == mode


def test_summary_false_is_no_summary_and_others_are_invalid(registry):
    assert parse(registry, "Patient", "_summary=false").summary is None
    with pytest.raises(InvalidRequest, match="_summary"):
        parse(registry, "Patient", "_summary=maybe")


def test_elements_and_total(registry):
    request = parse(registry, "Patient", "_elements=identifier, name,&_total=accurate")
    assert request.elements == ("identifier", "name")
    assert request.total == "accurate"
    with pytest.raises(InvalidRequest, match="_total"):
        parse(registry, "Patient", "_total=some")


def test_format_and_pretty_are_not_filters(registry):
    request = parse(registry, "Patient", "_format=json&_pretty=true")
    assert request.filters == () and request.ignored == ()


# ---- _id, _lastUpdated and the common parameters ------------------------------------------


def test_id_and_last_updated(registry):
    request = parse(registry, "Patient", "_id=wang,li&_lastUpdated=gt2024-03-10T09:30:00Z")
    id_filter, updated = request.filters
    assert id_filter.param.code == "_id" and id_filter.values == (Value("wang"), Value("li"))
    assert updated.param.code == "_lastUpdated" and updated.values == (Value("2024-03-10T09:30:00Z", "gt"),)


@pytest.mark.parametrize(("code", "kind"), [("_tag", "token"), ("_security", "token"), ("_profile", "uri")])
def test_meta_parameters_exist_on_every_type(registry, code, kind):
    for rtype in ("Patient", "Observation", "Group"):
        f = only_filter(parse(registry, rtype, [(code, "x")]))
        assert (f.param.code, f.param.type) == (code, kind)


# ---- unknown parameters -------------------------------------------------------------------


def test_unknown_parameter_is_collected_and_the_rest_applied(registry):
    request = parse(registry, "Patient", "shoe-size=42&name=王")
    assert [f.param.code for f in request.filters] == ["name"]
    assert len(request.ignored) == 1 and "shoe-size" in request.ignored[0]


def test_unknown_parameter_is_an_error_when_strict(registry):
    with pytest.raises(UnknownParameter, match="shoe-size"):
        parse(registry, "Patient", "shoe-size=42&name=王", strict=True)


def test_unsupported_standard_parameter_is_not_silently_applied(registry):
    # _content is listed as unsupported: never a filter, always reported
    request = parse(registry, "Patient", "_content=高血压")
    assert request.filters == () and len(request.ignored) == 1


def test_unknown_parameter_inside_has_is_reported(registry):
    request = parse(registry, "Patient", "_has:Observation:patient:shoe-size=1")
    assert request.filters == () and len(request.ignored) == 1


def test_a_known_parameter_never_becomes_unknown(registry):
    for rtype, code in [("Observation", "code-value-quantity"), ("Observation", "component-code-value-quantity"),
                        ("RiskAssessment", "probability"), ("Questionnaire", "url"), ("Encounter", "date")]:
        param = p(registry, rtype, code)
        assert parse(registry, rtype, [(code, "1$1" if param.type == "composite" else "1")]).ignored == ()
