"""Wiring: one ``Server`` holds the database, the registry and the services built on them.

The HTTP API, the CLI and the adapters all take a ``Server`` and call its services; nothing
talks to the store directly.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable

import orjson
from sqlalchemy import Connection, select

from fhir_server.auth.access import AccessPolicy
from fhir_server.auth.audit import AuditTrail
from fhir_server.errors import FhirError
from fhir_server.fhir.structure import model_class
from fhir_server.search.indexer import Indexer, component_code
from fhir_server.search.registry import SearchParamRegistry
from fhir_server.services.conformance import ConformanceResources
from fhir_server.services.history import HistoryService
from fhir_server.services.resources import ResourceService
from fhir_server.services.search import SearchService
from fhir_server.settings import Settings
from fhir_server.storage.engine import Database, after_commit
from fhir_server.storage.schema import resource
from fhir_server.storage.store import ResourceStore, SearchParamKeys
from fhir_server.terminology import TerminologyService
from fhir_server.validation import ProfileValidator
from fhir_server.validation.on_write import write_check

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
        self.access = AccessPolicy(self.registry, settings.profiles_dir, settings.base_url)
        self.audit = AuditTrail(self.db, self.store, self.indexer, self.access,
                                flush_seconds=settings.audit_flush_seconds)
        self.access.refusals.append(self.audit.refusal)
        self.search = SearchService(self.db, self.store, self.registry, self.keys, settings, self.access)
        self.resources = ResourceService(self.db, self.store, self.indexer, self.search.find_ids, self.access)
        self.history = HistoryService(self.db, self.store, self.access)
        # access first: it refuses (403) before anything else of the change is recorded
        self.resources.on_change += [self.access.on_change, self.audit.on_change]
        self.resources.on_change.append(self._follow_search_parameters)
        self._load_stored_search_parameters()
        self.sync_search_param_keys()
        self.terminology = TerminologyService.load(settings.terminology_dir)
        self.conformance = ConformanceResources(
            self.resources, list(self.terminology.resources), settings.local_profiles_dir,
            settings.profiles_dir / "operations")
        self.conformance.load()
        self.validator = ProfileValidator.from_directory(settings.local_profiles_dir, self.terminology)
        profile_check = write_check(self.validator, settings.validation)
        if profile_check is not None:
            self.resources.checks.append(profile_check)
        self.audit.flush()  # the write records a killed process left in the audit journal
        self.on_close: list[Callable[[], None]] = []  # what adapters hold open, let go at close()

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

    def warm_up(self) -> None:
        """Build now what writes otherwise build on first use (structure checks, compiled
        profiles, the UCUM registry, index plans): the county profiles' valid examples are
        checked and indexed, not stored."""
        for path in sorted((self.settings.local_profiles_dir / "examples").glob("*-valid.json")):
            example = orjson.loads(path.read_bytes())
            if model_class(example.get("resourceType", "")) is None:
                continue  # an extension's example
            try:
                self.resources.prepare(example)
            except FhirError as exc:  # the examples' tests report it; the server still starts
                log.warning("warm-up: %s does not pass the write checks: %s", path.name, exc)

    def close(self) -> None:
        for close in reversed(self.on_close):
            close()
        self.audit.close()  # queued read events are written before the engine goes
        self.db.dispose()


def start_server(settings: Settings) -> Server:
    """The ``Server`` of a process that keeps it until it exits (``serve`` and its workers, the
    commands, the demo loader's processes).

    Once it is built and warmed up, the objects of the start-up (models, profiles, search
    parameters, code systems...) are frozen out of the garbage collector's rounds
    (``gc.freeze``): they live as long as the process, and traversing them at every full
    collection cost about a quarter of an import's CPU time. Tests, which build many servers in
    one process, use ``Server``.
    """
    server = Server(settings)
    server.warm_up()
    gc.collect()
    gc.freeze()
    return server
