"""Compile a parsed ``SearchRequest`` into SQLAlchemy Core selects over the index tables.

Each filter compiles to a ``Criterion``: a check on one resource row (a correlated ``EXISTS``
over an index table, or a test of the row's own columns) and, when the filter can produce it,
the set of pids it matches. The query is driven by the most selective of those sets
(``resource.pid IN (<driver>)``, which both engines walk in pid order, so ``LIMIT`` stops early)
and every other filter is checked row by row through the ``(pid, sp)`` index. Which set is most
selective is decided by counting a bounded sample of each (``choose_driver``), or by a fixed
ranking when no connection is at hand. When the most selective one has fewer rows than the
sample, its pids are fetched and the query names them instead of selecting them again.

A ``visible`` condition (the caller's access scope, ``fhir_server/auth/access.py``) is applied to
every row the query reads: the matches and the targets and sources of chains and ``_has``, so
that a chain cannot reveal a resource the caller may not see.

Filters are ANDed, the values of one filter ORed. Chains select the ids of matching targets and
look them up in the reference index; ``_has`` selects the ids that matching sources refer to; a
composite joins its components' rows on ``pid`` and ``grp``. The SQL is the same on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import (
    Connection, FromClause, Select, and_, bindparam, exists, false, func, not_, or_, select, true, union,
)
from sqlalchemy.sql.elements import ColumnElement

from fhir_server.errors import InvalidRequest
from fhir_server.search.indexer import KINDS, component_code
from fhir_server.search.parse import (
    Filter, ReverseChain, SearchRequest, SortKey, Value, split_escaped, split_prefix,
)
from fhir_server.search.registry import SearchParam
from fhir_server.storage.index import date as date_index
from fhir_server.storage.index import reference as reference_index
from fhir_server.storage.index.text import clip
from fhir_server.storage.schema import INDEX_TABLES, resource
from fhir_server.storage.store import SearchParamKeys

# Sort column of each index kind: ascending uses the lowest value, descending the highest.
_SORT_COLUMN = {
    "string": "value", "token": "code", "number": "value", "quantity": "canonical_value",
    "reference": "target_id", "uri": "uri",
}
# Without a connection to count samples: how selective a kind of filter usually is (lower first).
_RANK = {"reference": 0, "chain": 1, "string": 2, "uri": 2, "token": 3, "composite": 3,
         "date": 4, "number": 4, "quantity": 4}
# Driver candidates are compared by counting at most SAMPLE of their rows, enough to tell a
# selective filter from a broad one; when every candidate reaches it, at most WIDE_SAMPLE (a
# glucose code has 100,000 rows in a large county, glucose above 16.7 mmol/L a few hundred);
# beyond that, by their rank.
SAMPLE = 200
WIDE_SAMPLE = 2000

Check = Callable[[FromClause], ColumnElement]
# the caller's access condition on a resource row (None: no restriction)
Visible = Callable[[FromClause], ColumnElement | None]


@dataclass(frozen=True)
class Criterion:
    """One compiled filter."""

    check: Check  # the condition on a resource row (the table or an alias of it)
    pids: Select | None = None  # the pids it matches, if it can drive the query
    rank: int = 9
    keyed: bool = False  # it tests the row's id, so the (type, id) index already drives


class SearchCompiler:
    def __init__(self, keys: SearchParamKeys, base_url: str = "",
                 union_parts: Callable[[SearchParam], tuple[SearchParam, ...] | None] = lambda param: None):
        self.keys = keys
        self.base_url = base_url
        # a parameter searched through the rows of others (``SearchParamRegistry.union_parts``)
        self.union_parts = union_parts

    # ---- the whole query ----------------------------------------------------------------
    def where(self, request: SearchRequest, extra: ColumnElement | None = None,
              conn: Connection | None = None, visible: Visible | None = None) -> ColumnElement:
        """The WHERE clause over ``resource`` for a request (``conn`` lets it sample drivers)."""
        clause = self._where(request.resource_type, request.filters, resource, conn, visible)
        return clause if extra is None else and_(clause, extra)

    def exact_tokens(self, request: SearchRequest) -> tuple[Select, dict] | None:
        """The ids of live resources matching ``param=system|code[,system|code...]`` on one token
        parameter (at most two: enough to tell one match from several), as a query built once per
        parameter and number of values, and its values; None for any other request.

        These are the criteria of conditional creates and updates by identifier (every HL7 v2
        message and most transactions carry several). Built the general way, each costs far more
        to construct than to run; this one is only given new values, so SQLAlchemy's compiled
        cache serves it. It matches exactly what ``where`` would (no access condition: the
        caller applies this only to unrestricted callers).
        """
        if len(request.filters) != 1:
            return None
        item = request.filters[0]
        if not isinstance(item, Filter) or item.chain or item.modifier or item.param.type != "token":
            return None
        tokens = []
        for value in item.values:
            system, bar, code = value.raw.partition("|")
            if not bar or not system or not code or "|" in code or "\\" in value.raw:
                return None
            tokens += [clip(system), clip(code)]
        sps = tuple(self._sp(item.param.resource_type, p.code) for p in self._parts(item.param))
        query = _exact_tokens_query(sps, len(item.values))
        return query, {f"t{i}": token for i, token in enumerate(tokens)}

    def ordered(self, request: SearchRequest, extra: ColumnElement | None = None,
                conn: Connection | None = None, visible: Visible | None = None) -> Select:
        """The pids of all matches in result order (paging is applied by the caller)."""
        return self.in_order(request, self.where(request, extra, conn, visible))

    def in_order(self, request: SearchRequest, where: ColumnElement) -> Select:
        """The pids of the resources ``where`` matches, in the request's order."""
        query = select(resource.c.pid).where(where)
        order = [self._sort_key(request.resource_type, key) for key in request.sort]
        # values missing sort last on both engines; pid keeps pages stable
        return query.order_by(*(c.nulls_last() for c in order), resource.c.pid)

    def page(self, request: SearchRequest, extra: ColumnElement | None = None,
             conn: Connection | None = None, visible: Visible | None = None) -> Select:
        return self.ordered(request, extra, conn, visible).limit(request.count).offset(request.offset)

    def _where(self, rtype: str, filters, row: FromClause, conn: Connection | None,
               visible: Visible | None = None) -> ColumnElement:
        criteria = [self.criterion(rtype, f, visible) for f in filters]
        driver, every_pid = self.choose_driver(criteria, conn)
        conditions = [row.c.deleted.is_(False)]
        if driver is None:
            conditions.append(row.c.res_type == rtype)
        else:
            # the driver's pids come from index rows of rtype's own parameters
            conditions.append(row.c.pid.in_(every_pid if every_pid is not None else driver.pids))
        conditions += [c.check(row) for c in criteria if c is not driver]
        scope = visible(row) if visible is not None else None
        if scope is not None:
            conditions.append(scope)
        return and_(*conditions)

    def choose_driver(self, criteria: list[Criterion], conn: Connection | None,
                      ) -> tuple[Criterion | None, list[int] | None]:
        """The criterion that drives the query, and every pid it matches when its count showed
        fewer rows than the sample. The query then names those pids, so that the planner knows
        exactly what drives it (PostgreSQL, estimating each column alone, would otherwise
        misjudge a value range under one code and walk the other filter's rows instead)."""
        if any(c.keyed for c in criteria):
            return None, None
        candidates = [c for c in criteria if c.pids is not None]
        if len(candidates) <= 1 or conn is None:
            return min(candidates, key=lambda c: c.rank, default=None), None
        sizes = [_sample_size(conn, c.pids, SAMPLE) for c in candidates]
        broad = min(sizes) == SAMPLE
        if broad:  # all broad at first sight: look further before trusting rank
            sizes = [_sample_size(conn, c.pids, WIDE_SAMPLE) for c in candidates]
        driver = candidates[min(range(len(candidates)), key=lambda i: (sizes[i], candidates[i].rank))]
        if broad:
            return driver, None
        # fewer rows than the sample: fetch them all. Without a LIMIT, which would make
        # PostgreSQL's planner bet on stopping early (on a misjudged range: a full scan).
        return driver, sorted(set(conn.execute(driver.pids).scalars()))

    # ---- filters -------------------------------------------------------------------------
    def criterion(self, rtype: str, item: Filter | ReverseChain, visible: Visible | None = None) -> Criterion:
        if isinstance(item, ReverseChain):
            ids = self._reverse_ids(rtype, item, visible)
            return Criterion(lambda row: row.c.res_id.in_(ids), keyed=True)
        if item.chain:
            pids = self._chain_pids(rtype, item, visible)
            return Criterion(lambda row: row.c.pid.in_(pids), pids, _RANK["chain"])
        param = item.param
        if param.code == "_id":
            return Criterion(self._id_check(item), keyed=item.modifier not in ("not", "missing"))
        if param.code == "_lastUpdated":
            return Criterion(self._last_updated_check(item))
        if item.modifier == "missing":
            table, where = self._any_row(param)
            missing = item.values[0].raw == "true"
            return Criterion(lambda row: _exists(table, where, row, negate=missing))
        if param.type == "composite":
            return self._composite(param, item.values)
        table = INDEX_TABLES[param.type]
        modifier = None if item.modifier == "not" else item.modifier
        with _naming(param.code):
            values = or_(*(self._value(param.type, table, v, modifier) for v in item.values))
        where = and_(self._rows_of(table, param), values)
        if item.modifier == "not":
            return Criterion(lambda row: _exists(table, where, row, negate=True))
        return Criterion(lambda row: _exists(table, where, row), select(table.c.pid).where(where),
                         _RANK[param.type])

    def _id_check(self, item: Filter) -> Check:
        if item.modifier == "missing":  # every resource has an id
            return lambda row: false() if item.values[0].raw == "true" else true()
        ids = [split_escaped(v.raw, ",")[0] for v in item.values]
        if item.modifier == "not":
            return lambda row: not_(row.c.res_id.in_(ids))
        return lambda row: row.c.res_id.in_(ids)

    def _last_updated_check(self, item: Filter) -> Check:
        if item.modifier == "missing":
            return lambda row: false() if item.values[0].raw == "true" else true()

        def check(row):
            column = row.c.last_updated
            with _naming(item.param.code):
                return or_(*(date_index.range_condition(column, column, v) for v in item.values))

        check(resource)  # a malformed value is reported now, not when the query runs
        return check

    def _value(self, kind: str, table, value: Value, modifier: str | None) -> ColumnElement:
        if kind == "reference":
            return reference_index.condition(table, value, modifier, self.base_url)
        return KINDS[kind].condition(table, value, modifier)

    def _any_row(self, param):
        if param.type == "composite":
            table = INDEX_TABLES[param.components[0].param.type]
            return table, self._rows_of(table, param, 0)
        table = INDEX_TABLES[param.type]
        return table, self._rows_of(table, param)

    def _composite(self, param, values: tuple[Value, ...]) -> Criterion:
        """Rows of all components from the same element (same pid and grp) must match."""
        alternatives = []  # per OR value and part of a union: (all tables, condition)
        for value, composite in ((v, c) for v in values for c in self._parts(param)):
            parts = split_escaped(value.raw, "$")
            if len(parts) != len(param.components):
                raise InvalidRequest(
                    f"{param.code} needs {len(param.components)} values separated by '$', got {value.raw!r}"
                )
            tables, conditions = [], []
            for position, (comp, part) in enumerate(zip(composite.components, parts, strict=True)):
                table = INDEX_TABLES[comp.param.type].alias(f"c{position}")
                prefix, raw = split_prefix(comp.param.type, part)
                sp = self._sp(param.resource_type, component_code(composite.code, position))
                with _naming(param.code):
                    value_condition = self._value(comp.param.type, table, Value(raw, prefix), None)
                conditions += [table.c.sp == sp, value_condition]
                if tables:
                    conditions += [table.c.pid == tables[0].c.pid, table.c.grp == tables[0].c.grp]
                tables.append(table)
            alternatives.append((tables, and_(*conditions)))
        selects = [select(tables[0].c.pid).select_from(*tables).where(where) for tables, where in alternatives]
        pids = selects[0] if len(selects) == 1 else union(*selects)

        def check(row):
            return or_(*(exists(select(1).select_from(*tables).where(tables[0].c.pid == row.c.pid, where))
                         for tables, where in alternatives))
        return Criterion(check, pids, _RANK["composite"])

    def _chain_pids(self, rtype: str, item: Filter, visible: Visible | None) -> Select:
        """pids of ``rtype`` whose reference (first link) points at a resource matching the rest:
        the matching targets' ids are found first, then looked up in the reference index."""
        link, rest = item.chain[0], item.chain[1:]
        inner = Filter(item.param, item.modifier, item.values, rest)
        refs = INDEX_TABLES["reference"]
        target = resource.alias()
        target_ids = select(target.c.res_id).where(self._where(link.target, (inner,), target, None, visible))
        return select(refs.c.pid).where(
            refs.c.sp == self._sp(rtype, link.param.code),
            refs.c.target_type == link.target,
            refs.c.target_id.in_(target_ids),
        )

    def _reverse_ids(self, rtype: str, item: ReverseChain, visible: Visible | None) -> Select:
        """ids of ``rtype`` resources that a matching ``item.source_type`` resource refers to."""
        refs = INDEX_TABLES["reference"]
        source = resource.alias()
        return (
            select(refs.c.target_id)
            .join(source, source.c.pid == refs.c.pid)
            .where(
                refs.c.sp == self._sp(item.source_type, item.reference.code),
                refs.c.target_type == rtype,
                self._where(item.source_type, (item.inner,), source, None, visible),
            )
        )

    # ---- sorting -------------------------------------------------------------------------
    def _sort_key(self, rtype: str, key: SortKey) -> ColumnElement:
        """The value to sort a row by: looked up per matching row, so only matches are read."""
        param = key.param
        if param.code == "_id":
            column = resource.c.res_id
        elif param.code == "_lastUpdated":
            column = resource.c.last_updated
        else:
            table = INDEX_TABLES[param.type].alias()
            if param.type == "date":
                value = table.c.high if key.descending else table.c.low
            else:
                value = table.c[_SORT_COLUMN[param.type]]
            pick = func.max(value) if key.descending else func.min(value)
            column = (
                select(pick)
                .where(table.c.pid == resource.c.pid, self._rows_of(table, param))
                .scalar_subquery()
            )
        return column.desc() if key.descending else column.asc()

    def _parts(self, param: SearchParam) -> tuple[SearchParam, ...]:
        """The parameters whose rows a search of ``param`` reads: its own, or its union's."""
        return self.union_parts(param) or (param,)

    def _rows_of(self, table, param: SearchParam, component: int | None = None) -> ColumnElement:
        """The rows of ``table`` that are ``param``'s (or its ``component``'s): its own, or its
        union's parts'."""
        codes = [p.code if component is None else component_code(p.code, component) for p in self._parts(param)]
        return _rows_keyed(table, [self._sp(param.resource_type, code) for code in codes])

    def _sp(self, rtype: str, code: str) -> int:
        # A parameter never indexed has no key yet; -1 matches no row.
        key = self.keys.lookup(rtype, code)
        return -1 if key is None else key


@lru_cache(maxsize=512)
def _exact_tokens_query(sps: tuple[int, ...], count: int) -> Select:
    """``SearchCompiler.exact_tokens``'s query for these parameter keys and number of values;
    the values are the bound parameters t0, t1, ... (system, code of each in turn)."""
    table = INDEX_TABLES["token"]
    values = or_(*(and_(table.c.system == bindparam(f"t{2 * i}"), table.c.code == bindparam(f"t{2 * i + 1}"))
                   for i in range(count)))
    pids = select(table.c.pid).where(_rows_keyed(table, sps), values)
    return select(resource.c.res_id).where(resource.c.deleted.is_(False), resource.c.pid.in_(pids)).limit(2)


def _rows_keyed(table, keys) -> ColumnElement:
    """The rows of ``table`` under any of the parameter ``keys``."""
    return table.c.sp == keys[0] if len(keys) == 1 else table.c.sp.in_(keys)


def count_of(where: ColumnElement) -> Select:
    """How many resources ``where`` matches."""
    return select(func.count()).select_from(resource).where(where)


def _exists(table, where: ColumnElement, row: FromClause, negate: bool = False) -> ColumnElement:
    """``[NOT] EXISTS`` a row of ``table`` for this resource row matching ``where``."""
    clause = exists(select(1).select_from(table).where(table.c.pid == row.c.pid, where))
    return not_(clause) if negate else clause


def _sample_size(conn: Connection, pids: Select, limit: int) -> int:
    """How many rows ``pids`` yields, counting at most ``limit``."""
    return conn.execute(select(func.count()).select_from(pids.limit(limit).subquery())).scalar_one()


@contextmanager
def _naming(code: str):
    """A malformed value is reported naming its parameter: ``date: 'x' is not a FHIR date``."""
    try:
        yield
    except InvalidRequest as exc:
        raise InvalidRequest(f"Search parameter {code!r}: {exc.message}") from None


__all__ = ["SearchCompiler", "Criterion", "count_of"]
