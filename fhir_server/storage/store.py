"""The resource store: current versions, history and index rows, on one SQL connection.

Every method takes the ``Connection`` of the caller's transaction, so that a service can put a
resource, its history row, its index rows (and later its audit and provenance) in one commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import NamedTuple

import orjson
from sqlalchemy import Connection, Dialect, FromClause, Table, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.sql.elements import ColumnElement

from fhir_server.search.indexer import IndexRow
from fhir_server.storage.engine import (
    after_commit, before_commit, driver_cursor, driver_executemany, transaction_state)
from fhir_server.storage.schema import INDEX_TABLES, resource, resource_history, search_param


@dataclass(frozen=True)
class Stored:
    """One stored version of a resource (current or historical)."""

    pid: int
    res_type: str
    res_id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: str | None
    method: str = ""

    def json(self) -> dict:
        return orjson.loads(self.content) if self.content else {}


_CURRENT_COLS = (
    resource.c.pid, resource.c.res_type, resource.c.res_id, resource.c.version,
    resource.c.last_updated, resource.c.deleted, resource.c.content,
)
# Statements built once; each call only binds parameters.
_CURRENT = select(*_CURRENT_COLS).where(resource.c.res_type == bindparam("res_type"),
                                        resource.c.res_id == bindparam("res_id"))
_CURRENT_FOR_UPDATE = _CURRENT.with_for_update()
_UPDATE_RESOURCE = (
    update(resource)
    .where(resource.c.pid == bindparam("b_pid"))
    .values(version=bindparam("version"), last_updated=bindparam("last_updated"),
            deleted=bindparam("deleted"), content=bindparam("content"))
)
_DELETE_INDEX = [delete(table).where(table.c.pid.in_(bindparam("pids", expanding=True)))
                 for table in INDEX_TABLES.values()]
_HISTORY_COLS = (
    resource_history.c.pid, resource_history.c.res_type, resource_history.c.res_id,
    resource_history.c.version, resource_history.c.last_updated, resource_history.c.deleted,
    resource_history.c.content, resource_history.c.method,
)


_PENDING = "pending_rows"


@cache
def _insert_sql(dialect: Dialect, table: Table, returning: bool = False):
    """An INSERT compiled once per dialect, its parameter order (for positional drivers) and
    the column types' bind converters (e.g. datetimes as SQLAlchemy stores them in SQLite);
    ``returning``: it returns the new primary key."""
    statement = insert(table)
    if returning:  # the database assigns the key: every other column is a parameter
        statement = statement.values(
            {c.name: bindparam(c.name) for c in table.columns if not c.primary_key}
        ).returning(*table.primary_key.columns)
    compiled = statement.compile(dialect=dialect)
    converters = {}
    for column in table.columns:
        processor = column.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            converters[column.name] = processor
    order = tuple(compiled.positiontup) if compiled.positional else None
    return str(compiled), order, converters


def _driver_params(conn: Connection, table: Table, rows: list[dict], returning: bool = False):
    """The statement and the driver-level parameters of inserting ``rows`` into ``table``."""
    sql, order, converters = _insert_sql(conn.dialect, table, returning)
    if converters:
        rows = [{**row, **{k: f(row[k]) for k, f in converters.items() if row.get(k) is not None}}
                for row in rows]
    return sql, [tuple(row[name] for name in order) for row in rows] if order else rows


def _executemany(conn: Connection, table: Table, rows: list[dict]) -> None:
    """Many rows through the driver's executemany, without per-row SQLAlchemy statement work."""
    sql, params = _driver_params(conn, table, rows)
    driver_executemany(conn, sql, params)


class EncodedRow(NamedTuple):
    """An index row ready for the driver: everything but the resource's pid and the key."""

    kind: str
    code: str  # the search parameter (its key is looked up when the row is written)
    tail: tuple  # grp, then the kind's value columns, converted for the driver


class _IndexInsert(NamedTuple):
    sql: str  # INSERT with positional parameters: sp, pid, grp, then the value columns
    columns: tuple[str, ...]  # the value columns
    converters: tuple[tuple[int, Callable], ...]  # (position in columns, bind converter)


@cache
def _index_insert(dialect: Dialect, kind: str) -> _IndexInsert:
    table = INDEX_TABLES[kind]
    names = [c.name for c in table.columns]
    assert names[:3] == ["sp", "pid", "grp"], names
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    quote = dialect.identifier_preparer.quote
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, names))}) "
           f"VALUES ({', '.join([mark] * len(names))})")
    converters = []
    for position, column in enumerate(table.columns[3:]):
        convert = column.type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None:
            converters.append((position, convert))
    return _IndexInsert(sql, tuple(names[3:]), tuple(converters))


def _insert_returning_pid(conn: Connection, row: dict) -> int:
    """Insert one current-version row on the driver's own cursor; returns its new pid."""
    sql, params = _driver_params(conn, resource, [row], returning=True)
    with driver_cursor(conn, sql, params[0]) as cursor:
        cursor.execute(sql, params[0])
        return cursor.fetchone()[0]


@dataclass
class _Pending:
    """Rows a write transaction has produced but not yet sent to the database.

    They go in one ``executemany`` per table at ``flush``: a Bundle of hundreds of resources
    then costs a few statements instead of several per resource.
    """

    index: dict[int, list[tuple[str, tuple]]] = field(default_factory=dict)  # pid -> (kind, params)
    history: list[dict] = field(default_factory=list)


class SearchParamKeys:
    """Small integer keys for (resource type, parameter code), cached after they are committed."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], int] = {}

    def sync(self, conn: Connection, wanted: Iterable[tuple[str, str]]) -> None:
        """Create missing keys and load all keys into the cache (call in its own transaction)."""
        existing = {(r.res_type, r.code): r.sp for r in conn.execute(select(search_param))}
        missing = [{"res_type": t, "code": c} for t, c in set(wanted) - set(existing)]
        if missing:
            conn.execute(insert(search_param), missing)
            existing = {(r.res_type, r.code): r.sp for r in conn.execute(select(search_param))}
        self._cache = existing

    def get(self, conn: Connection, res_type: str, code: str) -> int:
        key = self._cache.get((res_type, code))
        if key is not None:
            return key
        # A parameter registered since the last sync: found or created in this transaction and
        # cached only once it commits, so that a rollback cannot leave a stale key behind.
        key = conn.execute(
            select(search_param.c.sp).where(search_param.c.res_type == res_type, search_param.c.code == code)
        ).scalar()
        if key is None:
            key = conn.execute(insert(search_param).values(res_type=res_type, code=code)).inserted_primary_key[0]
        after_commit(conn).append(lambda: self._cache.setdefault((res_type, code), key))
        return key

    def lookup(self, res_type: str, code: str) -> int | None:
        """The key if it exists (for queries: a parameter never indexed matches nothing)."""
        return self._cache.get((res_type, code))


class ResourceStore:
    def __init__(self, keys: SearchParamKeys, dialect: Dialect):
        self.keys = keys
        self.dialect = dialect

    # ---- reads ---------------------------------------------------------------------------
    def current(self, conn: Connection, res_type: str, res_id: str, *, for_update: bool = False) -> Stored | None:
        """The current version; ``for_update`` locks the row until the transaction ends
        (PostgreSQL; SQLite's writers are serialised already), so concurrent updates queue."""
        query = _CURRENT_FOR_UPDATE if for_update else _CURRENT
        row = conn.execute(query, {"res_type": res_type, "res_id": res_id}).first()
        return Stored(*row) if row else None

    def current_by_pids(self, conn: Connection, pids: Sequence[int]) -> dict[int, Stored]:
        found: dict[int, Stored] = {}
        for start in range(0, len(pids), 500):
            chunk = pids[start:start + 500]
            for row in conn.execute(select(*_CURRENT_COLS).where(resource.c.pid.in_(chunk))):
                found[row.pid] = Stored(*row)
        return found

    def referring(self, conn: Connection, target_type: str, target_id: str) -> list[Stored]:
        """The live resources with a reference (any reference parameter) to ``target_type/target_id``."""
        self.flush(conn)
        refs = INDEX_TABLES["reference"]
        pids = select(refs.c.pid).where(refs.c.target_id == target_id, refs.c.target_type == target_type)
        query = select(*_CURRENT_COLS).where(resource.c.pid.in_(pids), resource.c.deleted.is_(False))
        return [Stored(*row) for row in conn.execute(query.order_by(resource.c.pid))]

    def version(self, conn: Connection, res_type: str, res_id: str, version: int) -> Stored | None:
        self.flush(conn)
        row = conn.execute(
            select(*_HISTORY_COLS).where(
                resource_history.c.res_type == res_type,
                resource_history.c.res_id == res_id,
                resource_history.c.version == version,
            )
        ).first()
        return Stored(*row) if row else None

    def history(
        self, conn: Connection, *, res_type: str | None = None, res_id: str | None = None,
        since: datetime | None = None, before: datetime | None = None, limit: int = 20, offset: int = 0,
        visible: Callable[[FromClause], ColumnElement | None] | None = None,
    ) -> tuple[list[Stored], int]:
        """Versions newest first, and the total count of versions matching (``visible``: the
        caller's access condition on a history row)."""
        self.flush(conn)
        conditions = []
        scope = visible(resource_history) if visible is not None else None
        if scope is not None:
            conditions.append(scope)
        if res_type:
            conditions.append(resource_history.c.res_type == res_type)
        if res_id:
            conditions.append(resource_history.c.res_id == res_id)
        if since:
            conditions.append(resource_history.c.last_updated >= since)
        if before:
            conditions.append(resource_history.c.last_updated < before)
        where = and_(*conditions) if conditions else None
        query = select(*_HISTORY_COLS)
        count_query = select(func.count()).select_from(resource_history)
        if where is not None:
            query, count_query = query.where(where), count_query.where(where)
        query = query.order_by(
            resource_history.c.last_updated.desc(), resource_history.c.pid.desc(),
            resource_history.c.version.desc(),
        ).limit(limit).offset(offset)
        rows = [Stored(*r) for r in conn.execute(query)]
        return rows, conn.execute(count_query).scalar_one()

    # ---- writes --------------------------------------------------------------------------
    def insert(self, conn: Connection, res_type: str, res_id: str, content: bytes, when: datetime) -> int:
        text = content.decode()
        pid = _insert_returning_pid(conn, {
            "res_type": res_type, "res_id": res_id, "version": 1, "last_updated": when, "deleted": False,
            "content": text,
        })
        self._history(conn, pid, res_type, res_id, 1, when, False, "POST", text)
        return pid

    def replace(
        self, conn: Connection, current: Stored, content: bytes | None, when: datetime, method: str,
    ) -> int:
        """Write the next version of an existing row (content None means deleted)."""
        version = current.version + 1
        text = content.decode() if content is not None else None
        conn.execute(_UPDATE_RESOURCE, {
            "b_pid": current.pid, "version": version, "last_updated": when, "deleted": text is None,
            "content": text,
        })
        self._history(conn, current.pid, current.res_type, current.res_id, version, when, text is None, method, text)
        return version

    def _history(self, conn, pid, res_type, res_id, version, when, deleted, method, text) -> None:
        self._pending(conn).history.append({
            "pid": pid, "version": version, "res_type": res_type, "res_id": res_id, "last_updated": when,
            "deleted": deleted, "method": method, "content": text,
        })

    def encode(self, rows: list[IndexRow]) -> list[EncodedRow]:
        """Index rows in the driver's terms: work that needs no connection, so a writer can do
        it before its transaction."""
        encoded = []
        converted: dict[tuple[str, int], list] = {}  # rows of several parameters share one values dict
        for row in rows:
            key = (row.kind, id(row.values))
            values = converted.get(key)
            if values is None:
                target = _index_insert(self.dialect, row.kind)
                values = converted[key] = list(map(row.values.get, target.columns))
                for position, convert in target.converters:
                    if values[position] is not None:
                        values[position] = convert(values[position])
            encoded.append(EncodedRow(row.kind, row.code, (row.grp, *values)))
        return encoded

    def write_index(
        self, conn: Connection, pid: int, res_type: str, rows: list[EncodedRow], *, fresh: bool,
    ) -> None:
        """Replace the index rows of a resource (``fresh``: it has none yet)."""
        if not fresh:
            self.clear_index(conn, [pid])
        keys = self.keys
        self._pending(conn).index[pid] = [
            (row.kind, (keys.get(conn, res_type, row.code), pid, *row.tail)) for row in rows
        ]

    def clear_index(self, conn: Connection, pids: Sequence[int]) -> None:
        pending = self._pending(conn).index
        for pid in pids:
            pending.pop(pid, None)
        for statement in _DELETE_INDEX:
            conn.execute(statement, {"pids": list(pids)})

    def flush(self, conn: Connection) -> None:
        """Write the history and index rows waiting in this transaction (run before commit and
        before reading history or searching inside it)."""
        state = transaction_state(conn)
        pending: _Pending | None = state.get(_PENDING) if state else None
        if pending is None or not (pending.index or pending.history):
            return
        if pending.history:
            _executemany(conn, resource_history, pending.history)
        by_kind: dict[str, list[tuple]] = defaultdict(list)
        for rows in pending.index.values():
            for kind, params in rows:
                by_kind[kind].append(params)
        pending.index.clear()
        pending.history = []
        for kind, params in by_kind.items():
            driver_executemany(conn, _index_insert(self.dialect, kind).sql, params)

    def _pending(self, conn: Connection) -> _Pending:
        state = transaction_state(conn)
        if state is None:
            raise RuntimeError("resources can only be written inside Database.write()")
        if _PENDING not in state:
            state[_PENDING] = _Pending()
            before_commit(conn).append(lambda: self.flush(conn))
        return state[_PENDING]

    def pids_of_type(self, conn: Connection, res_type: str | None, after_pid: int, limit: int) -> list[Stored]:
        """Live resources in pid order, for batch jobs such as $reindex."""
        query = select(*_CURRENT_COLS).where(resource.c.pid > after_pid, resource.c.deleted.is_(False))
        if res_type:
            query = query.where(resource.c.res_type == res_type)
        return [Stored(*r) for r in conn.execute(query.order_by(resource.c.pid).limit(limit))]

    def count_live(self, conn: Connection, res_type: str | None = None) -> int:
        query = select(func.count()).select_from(resource).where(resource.c.deleted.is_(False))
        if res_type:
            query = query.where(resource.c.res_type == res_type)
        return conn.execute(query).scalar_one()

    def is_empty(self, conn: Connection) -> bool:
        return conn.execute(select(resource.c.pid).limit(1)).first() is None


__all__ = ["ResourceStore", "SearchParamKeys", "Stored"]
