"""Compile a parsed ``SearchRequest`` into SQLAlchemy Core selects over the index tables.

Each filter becomes ``resource.pid IN (<select pid from an index table>)``; filters are ANDed,
the values of one filter ORed. Chains join reference rows to their targets; ``_has`` selects the
ids that matching sources refer to; a composite joins its components' rows on ``pid`` and
``grp``. The same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import Select, and_, false, func, not_, or_, select, true, union
from sqlalchemy.sql.elements import ColumnElement

from fhir_server.errors import InvalidRequest
from fhir_server.search.indexer import KINDS, component_code
from fhir_server.search.parse import (
    Filter, ReverseChain, SearchRequest, SortKey, Value, split_escaped, split_prefix,
)
from fhir_server.storage.index import date as date_index
from fhir_server.storage.index import reference as reference_index
from fhir_server.storage.schema import INDEX_TABLES, resource
from fhir_server.storage.store import SearchParamKeys

# Sort column of each index kind: ascending uses the lowest value, descending the highest.
_SORT_COLUMN = {
    "string": "value", "token": "code", "number": "value", "quantity": "canonical_value",
    "reference": "target_id", "uri": "uri",
}


class SearchCompiler:
    def __init__(self, keys: SearchParamKeys, base_url: str = ""):
        self.keys = keys
        self.base_url = base_url

    # ---- the whole query ----------------------------------------------------------------
    def where(self, request: SearchRequest, extra: ColumnElement | None = None) -> ColumnElement:
        conditions = [resource.c.res_type == request.resource_type, resource.c.deleted.is_(False)]
        conditions += [self.condition(request.resource_type, f) for f in request.filters]
        if extra is not None:
            conditions.append(extra)
        return and_(*conditions)

    def page(self, request: SearchRequest, extra: ColumnElement | None = None) -> Select:
        query = select(resource.c.pid).where(self.where(request, extra))
        order = []
        for position, key in enumerate(request.sort):
            query, column = self._sort_join(query, request.resource_type, key, position)
            order.append(column.desc() if key.descending else column.asc())
        # values missing sort last on both engines; pid keeps pages stable
        query = query.order_by(*(c.nulls_last() for c in order), resource.c.pid)
        return query.limit(request.count).offset(request.offset)

    def count(self, request: SearchRequest, extra: ColumnElement | None = None) -> Select:
        return select(func.count()).select_from(resource).where(self.where(request, extra))

    # ---- filters -------------------------------------------------------------------------
    def condition(self, rtype: str, item: Filter | ReverseChain, row=resource) -> ColumnElement:
        """One filter over ``row`` (the resource table, or an alias of it inside a chain)."""
        if isinstance(item, ReverseChain):
            return row.c.res_id.in_(self._reverse_ids(rtype, item))
        if item.chain:
            return row.c.pid.in_(self._chain_pids(rtype, item))
        return self._local(item, row.c.pid, row.c.res_id, row.c.last_updated)

    def pids_matching(self, rtype: str, item: Filter) -> Select:
        """pids of live ``rtype`` resources matching one filter (used for chains)."""
        return select(resource.c.pid).where(
            resource.c.res_type == rtype, resource.c.deleted.is_(False),
            self._local(item, resource.c.pid, resource.c.res_id, resource.c.last_updated),
        )

    def _local(self, item: Filter, pid_col, id_col, updated_col) -> ColumnElement:
        param = item.param
        if param.code == "_id":
            if item.modifier == "missing":  # every resource has an id
                return false() if item.values[0].raw == "true" else true()
            ids = [split_escaped(v.raw, ",")[0] for v in item.values]
            clause = id_col.in_(ids)
            return not_(clause) if item.modifier == "not" else clause
        if param.code == "_lastUpdated":
            if item.modifier == "missing":
                return false() if item.values[0].raw == "true" else true()
            with _naming(param.code):
                return or_(*(date_index.range_condition(updated_col, updated_col, v) for v in item.values))
        if item.modifier == "missing":
            has_any = pid_col.in_(self._any_row(param))
            return not_(has_any) if item.values[0].raw == "true" else has_any
        if param.type == "composite":
            return pid_col.in_(self._composite(param, item.values))
        sp = self._sp(param.resource_type, param.code)
        table = INDEX_TABLES[param.type]
        modifier = None if item.modifier == "not" else item.modifier
        with _naming(param.code):
            values = or_(*(self._value(param.type, table, v, modifier) for v in item.values))
        rows = select(table.c.pid).where(table.c.sp == sp, values)
        if item.modifier == "not":
            return pid_col.not_in(rows)
        return pid_col.in_(rows)

    def _value(self, kind: str, table, value: Value, modifier: str | None) -> ColumnElement:
        if kind == "reference":
            return reference_index.condition(table, value, modifier, self.base_url)
        return KINDS[kind].condition(table, value, modifier)

    def _any_row(self, param) -> Select:
        if param.type == "composite":
            param_code, kind = component_code(param.code, 0), param.components[0].param.type
        else:
            param_code, kind = param.code, param.type
        table = INDEX_TABLES[kind]
        return select(table.c.pid).where(table.c.sp == self._sp(param.resource_type, param_code))

    def _composite(self, param, values: tuple[Value, ...]) -> Select:
        """Rows of all components from the same element (same pid and grp) must match."""
        alternatives = []
        for value in values:
            parts = split_escaped(value.raw, "$")
            if len(parts) != len(param.components):
                raise InvalidRequest(
                    f"{param.code} needs {len(param.components)} values separated by '$', got {value.raw!r}"
                )
            tables, conditions = [], []
            for position, (comp, part) in enumerate(zip(param.components, parts)):
                table = INDEX_TABLES[comp.param.type].alias(f"c{position}")
                prefix, raw = split_prefix(comp.param.type, part)
                sp = self._sp(param.resource_type, component_code(param.code, position))
                with _naming(param.code):
                    value_condition = self._value(comp.param.type, table, Value(raw, prefix), None)
                conditions += [table.c.sp == sp, value_condition]
                if tables:
                    conditions += [table.c.pid == tables[0].c.pid, table.c.grp == tables[0].c.grp]
                tables.append(table)
            alternatives.append(select(tables[0].c.pid).select_from(*tables).where(and_(*conditions)))
        return alternatives[0] if len(alternatives) == 1 else union(*alternatives)

    # Chains and _has join the resource table (aliased) instead of nesting one more IN (SELECT …)
    # per step: SQLite's parser overflows on deeply nested subqueries.
    def _chain_pids(self, rtype: str, item: Filter) -> Select:
        """pids of ``rtype`` whose reference (first link) points at a resource matching the rest."""
        link, rest = item.chain[0], item.chain[1:]
        inner = Filter(item.param, item.modifier, item.values, rest)
        refs = INDEX_TABLES["reference"]
        target = resource.alias()
        return (
            select(refs.c.pid)
            .join(target, and_(target.c.res_type == refs.c.target_type, target.c.res_id == refs.c.target_id))
            .where(
                refs.c.sp == self._sp(rtype, link.param.code),
                refs.c.target_type == link.target,
                target.c.deleted.is_(False),
                self.condition(link.target, inner, target),
            )
        )

    def _reverse_ids(self, rtype: str, item: ReverseChain) -> Select:
        """ids of ``rtype`` resources that a matching ``item.source_type`` resource refers to."""
        refs = INDEX_TABLES["reference"]
        source = resource.alias()
        return (
            select(refs.c.target_id)
            .join(source, source.c.pid == refs.c.pid)
            .where(
                refs.c.sp == self._sp(item.source_type, item.reference.code),
                refs.c.target_type == rtype,
                source.c.res_type == item.source_type,
                source.c.deleted.is_(False),
                self.condition(item.source_type, item.inner, source),
            )
        )

    # ---- sorting -------------------------------------------------------------------------
    def _sort_join(self, query: Select, rtype: str, key: SortKey, position: int = 0):
        param = key.param
        if param.code == "_id":
            return query, resource.c.res_id
        if param.code == "_lastUpdated":
            return query, resource.c.last_updated
        table = INDEX_TABLES[param.type]
        if param.type == "date":
            column = table.c.high if key.descending else table.c.low
        else:
            column = table.c[_SORT_COLUMN[param.type]]
        pick = func.max(column) if key.descending else func.min(column)
        keyed = (
            select(table.c.pid.label("pid"), pick.label("k"))
            .where(table.c.sp == self._sp(rtype, param.code))
            .group_by(table.c.pid)
            .subquery(f"sort{position}")  # codes of client-defined parameters are not identifiers
        )
        return query.outerjoin(keyed, keyed.c.pid == resource.c.pid), keyed.c.k

    def _sp(self, rtype: str, code: str) -> int:
        # A parameter never indexed has no key yet; -1 matches no row.
        key = self.keys.lookup(rtype, code)
        return -1 if key is None else key


@contextmanager
def _naming(code: str):
    """A malformed value is reported naming its parameter: ``date: 'x' is not a FHIR date``."""
    try:
        yield
    except InvalidRequest as exc:
        raise InvalidRequest(f"Search parameter {code!r}: {exc.message}") from None


__all__ = ["SearchCompiler"]
