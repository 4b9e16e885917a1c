"""``Observation/$lastn``: the most recent observations of each subject and code.

Implements http://hl7.org/fhir/OperationDefinition/Observation-lastn (R4/R4B).

Takes every Observation search parameter (``patient``, ``subject``, ``code``, ``category``,
``date``, ...; parsed by the search service, so the filters are the same SQL as a search) plus
``max`` (default 1): for each group of (subject, code) the ``max`` newest matching observations.

Everything happens in one SQL statement, with a window function that SQLite (3.25+) and
PostgreSQL both run::

    ROW_NUMBER() OVER (PARTITION BY subject, code ORDER BY effective DESC NULLS LAST, pid DESC)

where, for each matching observation (correlated look-ups on the ``pid`` indexes of the index
tables, so a selective filter stays cheap and 1M observations are one pass):

- ``subject`` is its ``subject`` reference from ``idx_reference`` (``Type/id``; the URL of an
  external reference; observations without a subject form one group of their own);
- ``code`` is one coding of ``Observation.code`` from ``idx_token``: the LOINC coding if there
  is one, otherwise any coding, choosing the smallest ``system|code`` when there are several
  (the index keeps no coding order, so "the first coding" cannot be told in SQL; an
  observation with several LOINC codings belongs to the group of the smallest code, never to
  two groups); an observation with a code of text only, or no code, groups under "no code";
- ``effective`` is the latest end of its ``date`` parameter (``Observation.effective[x]``).
  Undated observations rank after every dated one of their group, so they are returned only
  when the group has fewer than ``max`` dated ones. Equal dates are broken by the row key,
  newest stored first.

The result is a searchset Bundle ordered by subject, code and recency, paged by
``_count``/``_offset`` (each page re-runs the statement); ``_include`` and ``_revinclude`` work
as in a search. ``_sort`` is ignored (the order is the grouping). Only Observations inside the
caller's access scope are ranked (the scope is part of the SQL), and includes are limited the
same way.
"""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy import case, func, literal, select

from fhir_server.api.http import FhirRequest, FhirResponse
from fhir_server.auth.access import View, require_read
from fhir_server.errors import InvalidRequest
from fhir_server.operations.parameters import operation_parameters
from fhir_server.search.indexer import LOINC
from fhir_server.server import Server
from fhir_server.services.search import searchset_bundle
from fhir_server.storage.schema import INDEX_TABLES, resource

MAX_MAX = 1000


def handle(server: Server, request: FhirRequest) -> FhirResponse:
    params = operation_parameters(request)
    maximum = params.integer("max", 1, minimum=1)
    if maximum > MAX_MAX:
        raise InvalidRequest(f"max may be at most {MAX_MAX}")
    pairs = params.query_pairs(exclude=("max",))
    search = server.search.parse("Observation", [(k, v) for k, v in pairs if k != "_sort"], strict=request.strict)
    require_read(request.identity, "Observation", "s")

    with server.db.read() as conn:
        view = server.access.view(conn, request.identity)
        ranked = _ranked(server, search, conn, view).cte("ranked")
        chosen = select(ranked.c.pid).where(ranked.c.rn <= maximum)
        ordered = chosen.order_by(ranked.c.subject_key.nulls_last(), ranked.c.code_key.nulls_last(), ranked.c.rn)
        counted = select(func.count()).select_from(chosen.subquery())
        result = server.search.run_page(conn, search, ordered, counted, view)
    returned = [(s.res_type, s.res_id) for s in (*result.matches, *result.included)]
    server.audit.read(request.identity, "operation", returned, query=f"Observation/$lastn?{urlencode(pairs)}")
    link_pairs = [*pairs, ("max", str(maximum))]
    return FhirResponse(200, searchset_bundle(result, request.base_url, "Observation/$lastn", link_pairs))


def _ranked(server: Server, search, conn, view: View):
    """select(pid, subject_key, code_key, rn) over the Observations matching the search."""
    refs = INDEX_TABLES["reference"].alias("subj")
    tokens = INDEX_TABLES["token"].alias("codes")
    dates = INDEX_TABLES["date"].alias("eff")
    subject_sp = _key(server, "subject", "reference")
    code_sp = _key(server, "code", "token")
    date_sp = _key(server, "date", "date")

    subject_key = (
        select(func.min(func.coalesce(refs.c.target_type + literal("/") + refs.c.target_id, refs.c.url)))
        .where(refs.c.pid == resource.c.pid, refs.c.sp == subject_sp)
        .scalar_subquery()
    )
    # "0" sorts LOINC codings before the others; the prefix is part of the key, so that a LOINC
    # and a non-LOINC coding with the same text never share a group.
    code_key = (
        select(func.min(
            case((tokens.c.system == LOINC, literal("0")), else_=literal("1"))
            + func.coalesce(tokens.c.system, literal("")) + literal("|") + tokens.c.code
        ))
        .where(tokens.c.pid == resource.c.pid, tokens.c.sp == code_sp, tokens.c.code.is_not(None))
        .scalar_subquery()
    )
    effective = (
        select(func.max(dates.c.high))
        .where(dates.c.pid == resource.c.pid, dates.c.sp == date_sp)
        .scalar_subquery()
    )
    keyed = (
        select(
            resource.c.pid.label("pid"),
            subject_key.label("subject_key"),
            code_key.label("code_key"),
            effective.label("effective"),
        )
        .where(server.search.compiler.where(search, conn=conn, visible=view.rows))
        # MATERIALIZED (SQLite 3.35+, PostgreSQL 12+): each look-up runs once per row, not once
        # per use in the window and the outer query
        .cte("keyed")
        .prefix_with("MATERIALIZED")
    )
    rn = func.row_number().over(
        partition_by=(keyed.c.subject_key, keyed.c.code_key),
        order_by=(keyed.c.effective.desc().nulls_last(), keyed.c.pid.desc()),
    )
    return select(keyed.c.pid, keyed.c.subject_key, keyed.c.code_key, rn.label("rn"))


def _key(server: Server, code: str, kind: str) -> int:
    param = server.registry.get("Observation", code)
    if param is None or param.type != kind:
        raise InvalidRequest(f"$lastn needs the Observation search parameter {code!r} ({kind})")
    key = server.keys.lookup("Observation", code)
    return -1 if key is None else key
