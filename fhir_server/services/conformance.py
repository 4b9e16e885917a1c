"""The conformance resources shipped with the server, in the store and read-only.

At start-up the CodeSystems, ValueSets and ConceptMaps of ``terminology/`` (as the
terminology service loaded them), the StructureDefinitions under ``profiles/local/`` (not its
``examples/`` folder) and the OperationDefinitions of the server's own operations under
``profiles/operations/`` are written to the store under their own ids, so that read,
search and history work on them like on any resource. Only the files that differ from what is
stored are written (a new version); with nothing changed, start-up costs one read per file.
Several server processes may start at once: a load that loses the race for an id to another
process is retried once, and then finds the content already there.

Writes through the API to a shipped resource -- update, patch, delete, or a create or update
of another resource that would take a shipped canonical URL -- are refused with 405 (an
``on_change`` hook of the ResourceService, so transactions are covered too). To change one,
edit its file and restart the server.
"""

from __future__ import annotations

import contextvars
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from fhir_server.auth.identity import SYSTEM
from fhir_server.errors import Conflict, MethodNotAllowed
from fhir_server.fhir.models import is_valid_id
from fhir_server.services.resources import ResourceService
from fhir_server.storage.schema import resource as resource_table

log = logging.getLogger(__name__)
EXAMPLES_FOLDER = "examples"  # profiles/local/examples/: example instances, not definitions


@dataclass(frozen=True)
class LoadReport:
    written: tuple[str, ...]  # "Type/id" of each resource created or updated
    unchanged: int


class ConformanceResources:
    def __init__(self, resources: ResourceService, terminology: list[dict], local_profiles_dir: Path,
                 operations_dir: Path | None = None):
        self.resources = resources
        files = _definitions(local_profiles_dir, "StructureDefinition")
        files += _definitions(operations_dir, "OperationDefinition") if operations_dir else []
        self.shipped: tuple[dict, ...] = tuple(_usable(terminology + files))
        self._keys = {(r["resourceType"], r["id"]) for r in self.shipped}
        if len(self._keys) != len(self.shipped):
            shared = [k for k, n in Counter((r["resourceType"], r["id"]) for r in self.shipped).items() if n > 1]
            raise ValueError(f"Shipped conformance resources share an id: {shared}")
        self._urls = {(r["resourceType"], r["url"]) for r in self.shipped if r.get("url")}
        self._operation_urls = {r["code"]: r["url"] for r in self.shipped if r["resourceType"] == "OperationDefinition"}
        self._loading = contextvars.ContextVar("loading_shipped_resources", default=False)
        resources.on_change.append(self._refuse_changes)

    def operation_definition(self, code: str) -> str | None:
        """The canonical URL of the shipped OperationDefinition of operation ``code``, if any."""
        return self._operation_urls.get(code)

    def supported_profiles(self, res_type: str) -> list[str]:
        """The canonical URLs of the shipped profiles (constraints) on ``res_type``."""
        return sorted(
            r["url"] for r in self.shipped
            if r["resourceType"] == "StructureDefinition" and r.get("type") == res_type
            and r.get("derivation") == "constraint" and r.get("kind") == "resource" and r.get("url")
        )

    def holds_only_shipped(self, conn: Connection) -> bool:
        """True when the store holds nothing but shipped resources: a fresh database, for
        ``serve --demo`` (which loads the demo county only into an otherwise empty store)."""
        rows = conn.execute(select(resource_table.c.res_type, resource_table.c.res_id).limit(len(self._keys) + 1))
        return all((row.res_type, row.res_id) in self._keys for row in rows)

    def load(self) -> LoadReport:
        """Bring the store in line with the shipped files; idempotent."""
        # Losing the race for an id to another process: our 409, or the database's own error
        # when it surfaces from the driver (PEP 249 ``IntegrityError``).
        lost_race = (Conflict, IntegrityError, self.resources.db.engine.dialect.loaded_dbapi.IntegrityError)
        try:
            return self._load()
        except lost_race:
            return self._load()

    def _load(self) -> LoadReport:
        with self.resources.db.read() as conn:
            changed = [r for r in self.shipped if not self._stored_as(conn, r)]
        if changed:
            with self._writing(), self.resources.db.write() as conn:
                for resource in changed:
                    self.resources.update(resource["resourceType"], resource["id"], resource, conn=conn,
                                          identity=SYSTEM)
            log.info("Stored %d shipped conformance resources", len(changed))
        return LoadReport(tuple(f"{r['resourceType']}/{r['id']}" for r in changed), len(self.shipped) - len(changed))

    def _stored_as(self, conn: Connection, shipped: dict) -> bool:
        stored = self.resources.store.current(conn, shipped["resourceType"], shipped["id"])
        return stored is not None and not stored.deleted and _content(stored.json()) == _content(shipped)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        token = self._loading.set(True)
        try:
            yield
        finally:
            self._loading.reset(token)

    def _refuse_changes(self, conn: Connection, before: dict | None, after: dict | None) -> None:
        if self._loading.get():
            return
        for resource in (before, after):
            if resource and (resource["resourceType"], resource.get("id")) in self._keys:
                raise MethodNotAllowed(
                    f"{resource['resourceType']}/{resource['id']} is shipped with the server and read-only")
        if after and (after["resourceType"], after.get("url")) in self._urls:
            raise MethodNotAllowed(
                f"The {after['resourceType']} {after['url']} is shipped with the server and read-only; "
                "another resource may not take its url")


def _definitions(directory: Path, resource_type: str) -> list[dict]:
    """The ``resource_type`` resources among the JSON files below ``directory`` (not examples)."""
    found = []
    for path in sorted(directory.rglob("*.json")) if directory.is_dir() else []:
        if EXAMPLES_FOLDER in path.relative_to(directory).parts[:-1]:
            continue
        content = orjson.loads(path.read_bytes())
        if isinstance(content, dict) and content.get("resourceType") == resource_type:
            found.append(content)
    return found


def _usable(resources: list[dict]) -> Iterator[dict]:
    for resource in resources:
        if is_valid_id(resource.get("id") or ""):
            yield resource
        else:
            log.error("Shipped %s %s has no valid id: not served", resource.get("resourceType"), resource.get("url"))


def _content(resource: dict) -> dict:
    """The resource without the meta elements the server sets on every write."""
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    body = {k: v for k, v in resource.items() if k != "meta"}
    return {**body, "meta": meta} if meta else body


__all__ = ["ConformanceResources", "LoadReport"]
