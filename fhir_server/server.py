"""Wiring: one ``Server`` holds the database, the registry and the services built on them.

The HTTP API, the CLI and the adapters all take a ``Server`` and call its services; nothing
talks to the store directly.
"""

from __future__ import annotations

import logging

import orjson
from sqlalchemy import Connection, select

from fhir_server.search.indexer import Indexer, component_code
from fhir_server.search.registry import SearchParamRegistry
from fhir_server.services.history import HistoryService
from fhir_server.services.resources import ResourceService
from fhir_server.services.search import SearchService
from fhir_server.settings import Settings
from fhir_server.storage.engine import Database, after_commit
from fhir_server.storage.schema import resource
from fhir_server.storage.store import ResourceStore, SearchParamKeys

log = logging.getLogger(__name__)
# SearchParameter statuses that take effect (draft too, so that a client can try one out).
ACTIVE_STATUSES = ("active", "draft")


class Server:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.db = Database(settings.database_url)
        self.db.migrate()
        self.registry = SearchParamRegistry.from_profiles(settings.profiles_dir)
        self.keys = SearchParamKeys()
        self.store = ResourceStore(self.keys, self.db.engine.dialect)
        self.indexer = Indexer(self.registry)
        self.search = SearchService(self.db, self.store, self.registry, self.keys, settings)
        self.resources = ResourceService(self.db, self.store, self.indexer, self.search.find_ids)
        self.history = HistoryService(self.db, self.store)
        self.resources.on_change.append(self._follow_search_parameters)
        self._load_stored_search_parameters()
        self.sync_search_param_keys()

    def sync_search_param_keys(self) -> None:
        with self.db.write() as conn:
            self.keys.sync(conn, self._all_param_codes())

    def _all_param_codes(self) -> set[tuple[str, str]]:
        codes = set()
        for rtype in self.registry.supported_types:
            for param in self.registry.params_for(rtype).values():
                codes.add((rtype, param.code))
                codes.update((rtype, component_code(param.code, i)) for i in range(len(param.components)))
        return codes

    def _load_stored_search_parameters(self) -> None:
        with self.db.read() as conn:
            rows = conn.execute(
                select(resource.c.content).where(
                    resource.c.res_type == "SearchParameter", resource.c.deleted.is_(False)
                )
            )
            stored = [orjson.loads(r.content) for r in rows]
        for definition in stored:
            if definition.get("status") in ACTIVE_STATUSES:
                self.registry.add(definition)

    def _follow_search_parameters(self, conn: Connection, before: dict | None, after: dict | None) -> None:
        """A SearchParameter written through the API applies to new writes once it commits;
        a deleted or retired one stops applying. Existing data follows after ``$reindex``."""
        if "SearchParameter" not in {(before or {}).get("resourceType"), (after or {}).get("resourceType")}:
            return

        def apply() -> None:
            if before:
                self.registry.remove(before.get("url", ""))
            if after and after.get("status") in ACTIVE_STATUSES:
                self.registry.add(after)

        after_commit(conn).append(apply)

    def close(self) -> None:
        self.db.dispose()
