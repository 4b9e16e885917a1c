"""Run searches: the page of matches, its includes, the total, and the searchset Bundle.

Every entry point takes the caller's ``Identity``: its access scope (``View.rows``) is part of
the SQL of the matches, the total and the includes, and includes of a type the caller may not
read are left out.

Paging is by offset over an order that always ends with the row key, so ``next`` and
``previous`` links name the same pages as long as the data does not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from sqlalchemy import Connection, Select, select

from fhir_server.auth.access import AccessPolicy, View, require_read
from fhir_server.auth.permissions import authorize_search
from fhir_server.auth.identity import Identity
from fhir_server.errors import Issue, operation_outcome
from fhir_server.fhir.elements import elements as subset_elements
from fhir_server.fhir.elements import summary as subset_summary
from fhir_server.search.compile import SearchCompiler, count_of
from fhir_server.search.parse import Include, SearchRequest, parse_search
from fhir_server.search.registry import SearchParamRegistry
from fhir_server.settings import Settings
from fhir_server.storage.engine import Database
from fhir_server.storage.schema import INDEX_TABLES, resource
from fhir_server.storage.store import ResourceStore, SearchParamKeys, Stored

MAX_INCLUDE_ITERATIONS = 4
MAX_INCLUDED = 5000


@dataclass
class SearchResult:
    request: SearchRequest
    matches: list[Stored]
    included: list[Stored] = field(default_factory=list)
    total: int | None = None
    has_next: bool = False


class SearchService:
    def __init__(self, db: Database, store: ResourceStore, registry: SearchParamRegistry,
                 keys: SearchParamKeys, settings: Settings, access: AccessPolicy):
        self.access = access
        self.db = db
        self.store = store
        self.registry = registry
        self.keys = keys
        self.settings = settings
        self.compiler = SearchCompiler(keys, settings.base_url, registry.union_parts)

    def parse(self, res_type: str, pairs: list[tuple[str, str]], strict: bool = False) -> SearchRequest:
        return parse_search(
            self.registry, res_type, pairs, default_count=self.settings.default_page_size,
            max_count=self.settings.max_page_size, strict=strict,
        )

    def find_ids(self, conn: Connection, res_type: str, pairs: list[tuple[str, str]],
                 identity: Identity) -> list[str]:
        """Ids matching conditional-interaction criteria among what ``identity`` sees (strict: an
        unknown parameter is an error)."""
        request = self.parse(res_type, pairs, strict=True)
        self.store.flush(conn)  # index rows this transaction has written must be visible
        view = self.access.view(conn, identity)
        exact = self.compiler.exact_tokens(request) if view.unrestricted else None
        if exact is not None:
            query, values = exact
            return [row.res_id for row in conn.execute(query, values)]
        query = select(resource.c.res_id).where(self.compiler.where(request, conn=conn, visible=view.rows)).limit(2)
        return [row.res_id for row in conn.execute(query)]

    def search(self, request: SearchRequest, conn: Connection | None = None, *, identity: Identity) -> SearchResult:
        require_read(identity, request.resource_type, "s")
        authorize_search(identity, request)  # chains and _has reveal the types they search
        if conn is None:
            with self.db.read() as c:
                return self.search(request, c, identity=identity)
        self.store.flush(conn)  # inside a write transaction: make its own index rows visible
        view = self.access.view(conn, identity)
        where = self.compiler.where(request, conn=conn, visible=view.rows)
        return self.run_page(conn, request, self.compiler.in_order(request, where), count_of(where), view)

    def run_page(self, conn: Connection, request: SearchRequest, ordered: Select, count: Select,
                 view: View) -> SearchResult:
        """One page of ``ordered`` (pids in result order, already limited to ``view``), its total
        and its includes (limited to ``view`` here).

        Shared by search and by operations that rank matches their own way ($lastn).
        """
        if request.summary == "count" or request.count == 0:  # _count=0: the total, no pages to follow
            return SearchResult(request, [], total=conn.execute(count).scalar_one())
        # one more than asked tells whether a next page exists
        pids = [row.pid for row in conn.execute(ordered.limit(request.count + 1).offset(request.offset))]
        has_next = len(pids) > request.count
        pids = pids[: request.count]
        by_pid = self.store.current_by_pids(conn, pids)
        matches = [by_pid[p] for p in pids if p in by_pid]
        total = None
        if request.total in ("accurate", "estimate"):
            total = conn.execute(count).scalar_one()
        elif not has_next and (matches or request.offset == 0):
            total = request.offset + len(matches)
        included = self._includes(conn, request, matches, view) if request.includes and matches else []
        return SearchResult(request, matches, included, total, has_next)

    # ---- _include / _revinclude ----------------------------------------------------------
    def _includes(self, conn: Connection, request: SearchRequest, matches: list[Stored], view: View) -> list[Stored]:
        seen = {m.pid for m in matches}
        included: list[Stored] = []
        frontier = matches
        for iteration in range(MAX_INCLUDE_ITERATIONS):
            rules = [i for i in request.includes if iteration == 0 or i.iterate]
            found: list[Stored] = []
            for rule in rules:
                for stored in self._apply(conn, rule, frontier, view):
                    if stored.pid not in seen and len(included) + len(found) < MAX_INCLUDED:
                        seen.add(stored.pid)
                        found.append(stored)
            if not found:
                break
            included += found
            frontier = found
        return included

    def _apply(self, conn: Connection, rule: Include, sources: list[Stored], view: View) -> list[Stored]:
        refs = INDEX_TABLES["reference"]
        if rule.reverse:
            if not view.may_read(rule.source_type):
                return []
            scope = view.rows(resource)
            targets = [(s.res_type, s.res_id) for s in sources]
            params = [rule.param] if rule.param else self.registry.reference_params_targeting(
                rule.source_type, sources[0].res_type if sources else "")
            sps = [self.keys.lookup(rule.source_type, p.code) for p in params]
            pids = set()
            for rtype in {t for t, _ in targets}:
                ids = [i for t, i in targets if t == rtype]
                for chunk in _chunks(ids):
                    query = select(refs.c.pid).join(resource, resource.c.pid == refs.c.pid).where(
                        refs.c.sp.in_([s for s in sps if s is not None]),
                        refs.c.target_type == rtype, refs.c.target_id.in_(chunk),
                        *([] if scope is None else [scope]),
                    )
                    pids.update(row.pid for row in conn.execute(query))
            found = self.store.current_by_pids(conn, sorted(pids))
            return [s for s in found.values() if s.res_type == rule.source_type and not s.deleted]
        relevant = [s for s in sources if rule.source_type in ("*", s.res_type)]
        if not relevant:
            return []
        pairs: set[tuple[str, str]] = set()
        for rtype in {s.res_type for s in relevant}:
            if rule.param is not None:
                params = [rule.param]
            else:
                params = [p for p in self.registry.params_for(rtype).values() if p.type == "reference"]
            sps = [k for k in (self.keys.lookup(rtype, p.code) for p in params) if k is not None]
            for chunk in _chunks([s.pid for s in relevant if s.res_type == rtype]):
                query = select(refs.c.target_type, refs.c.target_id).where(
                    refs.c.sp.in_(sps), refs.c.pid.in_(chunk), refs.c.target_id.is_not(None),
                )
                if rule.target_type:
                    query = query.where(refs.c.target_type == rule.target_type)
                pairs.update((r.target_type, r.target_id) for r in conn.execute(query))
        return self.by_type_id(conn, pairs, view)

    def by_type_id(self, conn: Connection, pairs: set[tuple[str, str]], view: View) -> list[Stored]:
        """The live resources named by (type, id) pairs that ``view`` may read."""
        out = []
        scope = view.rows(resource)
        for rtype in {t for t, _ in pairs if view.may_read(t)}:
            ids = sorted(i for t, i in pairs if t == rtype)
            for chunk in _chunks(ids):
                query = select(resource.c.pid).where(
                    resource.c.res_type == rtype, resource.c.res_id.in_(chunk), resource.c.deleted.is_(False),
                    *([] if scope is None else [scope]),
                )
                pids = [row.pid for row in conn.execute(query)]
                out.extend(self.store.current_by_pids(conn, pids).values())
        return out


def _chunks(items: list, size: int = 500):
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---- the searchset Bundle -----------------------------------------------------------------
def searchset_bundle(
    result: SearchResult, base_url: str, path: str, pairs: list[tuple[str, str]],
) -> dict:
    """Render a result as a searchset Bundle with self/first/previous/next links."""
    request = result.request
    kept = [(k, v) for k, v in pairs if k not in ("_offset", "_count", "_format", "_pretty")]

    def link(offset: int) -> str:
        query = urlencode([*kept, ("_count", str(request.count)), ("_offset", str(offset))])
        return f"{base_url}/{path}?{query}"

    links = [{"relation": "self", "url": link(request.offset)}]
    if request.summary != "count":
        links.append({"relation": "first", "url": link(0)})
        if request.offset > 0:
            links.append({"relation": "previous", "url": link(max(0, request.offset - request.count))})
        if result.has_next:
            links.append({"relation": "next", "url": link(request.offset + request.count)})

    def entry(stored: Stored, mode: str) -> dict:
        body = stored.json()
        if request.summary in ("true", "text", "data"):
            body = subset_summary(body, request.summary)
        elif request.elements and mode == "match":
            body = subset_elements(body, request.elements)
        return {"fullUrl": f"{base_url}/{stored.res_type}/{stored.res_id}", "resource": body,
                "search": {"mode": mode}}

    bundle: dict = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        bundle["total"] = result.total
    bundle["link"] = links
    entries = [entry(m, "match") for m in result.matches] + [entry(i, "include") for i in result.included]
    if request.ignored:
        outcome = operation_outcome([Issue("warning", "not-supported", msg) for msg in request.ignored])
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return bundle
