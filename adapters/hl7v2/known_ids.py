"""A message's Bundle with known ids: the conditional entries looked up before the write.

``translate`` keys every resource on identifiers (``POST`` with ``ifNoneExist`` for the
patient and the institutions, ``PUT Type?identifier=`` for the sender's own records). Left
conditional, ``run_transaction`` would search for each of them inside the write transaction,
holding the write lock, and work out every resource there. ``with_known_ids`` does those
searches first, in one read transaction and mostly one per resource type (``identifier=a,b,c``),
and returns a Bundle the transaction checks, indexes and writes without searching:

- ``PUT Type?identifier=...`` becomes ``PUT Type/id`` with the stored resource's id, or a
  ``POST`` when none is stored (a create, 201, as the conditional update would have done);
- ``POST`` with ``ifNoneExist`` becomes a plain ``POST`` when nothing matches; when something
  does, the entry is dropped, references to it name the stored resource, and it is listed in
  ``existing`` (the pipeline still names it in the Provenance and the record);
- several matches are a ``MultipleMatches`` located at the entry, as the transaction says it;
- an entry whose criteria are not a single identifier is left as it is.

Why this is safe: the ``PUT`` entries are the sender's own numbers, and one sender's messages
are applied one at a time (the pipeline's sender turn), so nothing else writes them meanwhile.
A patient or an institution can be sent by two senders at once: ``check_created`` runs in the
write transaction and raises ``Conflict`` when a created one now has a twin (the pipeline then
resolves and writes the message again, and finds the other's).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from sqlalchemy import Connection

from fhir_server.auth.identity import Identity
from fhir_server.errors import Conflict, MultipleMatches
from fhir_server.fhir.references import map_references
from fhir_server.storage.ids import new_resource_id
from fhir_server.storage.locks import transaction_lock

__all__ = ["KnownIds", "with_known_ids", "check_created"]

_MAX_VALUE = 256  # longer token values are clipped in the index: left to the transaction's search


@dataclass
class KnownIds:
    """The Bundle to write, the stored resources it refers to instead of creating them, and
    the resources it creates that another sender may create at the same moment."""

    bundle: dict
    existing: list[str] = field(default_factory=list)  # Type/id/_history/v of matched ifNoneExist entries
    created: list[tuple[str, str]] = field(default_factory=list)  # (type, identifier criteria) of POSTs


@dataclass
class _Conditional:
    index: int
    rtype: str
    token: str  # "system|value" as the criteria give it
    create: bool  # POST ifNoneExist (True) or conditional PUT (False)
    criteria: str


def with_known_ids(server, bundle: dict, identity: Identity) -> KnownIds:
    """``bundle`` with its identifier-conditional entries resolved (``bundle`` is not changed)."""
    entries = list(bundle.get("entry") or [])
    conditionals = [c for i, e in enumerate(entries) if (c := _conditional(i, e)) is not None]
    if not conditionals:
        return KnownIds(bundle)
    rewrite = _Rewrite(entries, Counter((c.rtype, c.token) for c in conditionals if not c.create))
    with server.db.read() as conn:
        found = _stored(server, conn, conditionals, identity)
        for conditional in conditionals:
            matches = found[(conditional.rtype, conditional.token)]
            if len(matches) > 1:
                where = f"Bundle.entry[{conditional.index}]"
                raise MultipleMatches(f"{where}: The criteria {conditional.criteria!r} match several "
                                      f"{conditional.rtype} resources", expression=where)
            if conditional.create and matches:
                stored = server.resources.read_stored(conditional.rtype, matches[0], conn, identity=identity)
                rewrite.refer_to_stored(conditional, f"{stored.res_type}/{stored.res_id}", stored.version)
            elif conditional.create:
                rewrite.create(conditional)
            else:
                rewrite.update(conditional, matches[0] if matches else None)
    return KnownIds({**bundle, "entry": rewrite.entries()}, rewrite.existing, rewrite.created)


class _Rewrite:
    """The entries being rewritten, one conditional at a time (as the transaction would assign ids)."""

    def __init__(self, entries: list[dict], puts: Counter):
        self._entries = entries
        self._puts = puts  # criteria -> how many conditional PUTs the Bundle has
        self._dropped: set[int] = set()
        self._replaced: dict[str, str] = {}  # fullUrl of a dropped entry -> what references name instead
        self._first_created: dict[tuple[str, str], str] = {}  # criteria -> fullUrl of the POST creating it
        self._put_ids: dict[tuple[str, str], str] = {}  # criteria -> the id its PUTs write
        self.existing: list[str] = []
        self.created: list[tuple[str, str]] = []

    def refer_to_stored(self, conditional: _Conditional, reference: str, version: int) -> None:
        """A POST whose resource is stored: dropped, references name the stored one."""
        self._drop(conditional.index, reference)
        self.existing.append(f"{reference}/_history/{version}")

    def create(self, conditional: _Conditional) -> None:
        """A POST whose resource is not stored: a plain POST (the same resource twice: the first)."""
        entry = self._entries[conditional.index]
        first = self._first_created.setdefault((conditional.rtype, conditional.token), entry.get("fullUrl", ""))
        if first != entry.get("fullUrl", ""):
            self._drop(conditional.index, first)
            return
        request = {k: v for k, v in entry["request"].items() if k != "ifNoneExist"}
        self._entries[conditional.index] = {**entry, "request": request}
        self.created.append((conditional.rtype, conditional.criteria))

    def update(self, conditional: _Conditional, stored_id: str | None) -> None:
        """A conditional PUT: ``PUT Type/id`` of the stored resource; a POST when there is none
        (nothing to read in the write transaction), unless the Bundle writes it twice."""
        key = (conditional.rtype, conditional.token)
        entry = self._entries[conditional.index]
        if stored_id is None and self._puts[key] == 1:
            self._entries[conditional.index] = {**entry, "request": {"method": "POST", "url": conditional.rtype}}
            return
        target = self._put_ids.setdefault(key, stored_id or new_resource_id())
        self._entries[conditional.index] = {**entry, "resource": {**entry["resource"], "id": target},
                                            "request": {**entry["request"], "url": f"{conditional.rtype}/{target}"}}

    def entries(self) -> list[dict]:
        kept = [e for i, e in enumerate(self._entries) if i not in self._dropped]
        if not self._replaced:
            return kept
        replaced = self._replaced
        return [{**e, "resource": map_references(e["resource"], lambda ref: replaced.get(ref, ref))}
                if "resource" in e else e for e in kept]

    def _drop(self, index: int, replacement: str) -> None:
        self._replaced[self._entries[index].get("fullUrl", "")] = replacement
        self._dropped.add(index)


def check_created(server, conn: Connection, known: KnownIds, identity: Identity) -> None:
    """In the write transaction: each patient or institution this Bundle created must be the only
    one with its identifier, else another sender's message created it meanwhile (``Conflict``)."""
    for rtype, criteria in known.created:
        # two transactions creating the same one at once (PostgreSQL) check one after the other,
        # the second after the first committed: it then sees the twin
        transaction_lock(conn, f"create {rtype}?{criteria}")
        if len(server.search.find_ids(conn, rtype, parse_qsl(criteria, keep_blank_values=True), identity)) > 1:
            raise Conflict(f"Another message created the {rtype} with {criteria} at the same moment")


def _conditional(index: int, entry: dict) -> _Conditional | None:
    request = entry.get("request") or {}
    method, url = request.get("method"), request.get("url", "")
    if method == "POST" and request.get("ifNoneExist"):
        rtype, criteria, create = url, request["ifNoneExist"], True
    elif method == "PUT" and "?" in url:
        (rtype, criteria), create = url.split("?", 1), False
    else:
        return None
    pairs = parse_qsl(criteria, keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "identifier":
        return None
    token = pairs[0][1]
    system, bar, value = token.partition("|")
    if not bar or not system or not value or "," in token or "\\" in token or len(value) > _MAX_VALUE:
        return None
    return _Conditional(index, rtype, token, create, criteria)


def _stored(server, conn: Connection, conditionals: list[_Conditional],
            identity: Identity) -> dict[tuple[str, str], list[str]]:
    """{(type, "system|value"): ids of the stored resources} for every conditional.

    One search per type for all its identifiers (``identifier=a,b,c``): usually nothing is
    stored yet and that is the answer. Only when something is, each identifier is searched on
    its own (a correction or a redelivery; the patient and the institutions, one identifier each).
    """
    tokens: dict[str, list[str]] = {}
    for conditional in conditionals:
        wanted = tokens.setdefault(conditional.rtype, [])
        if conditional.token not in wanted:
            wanted.append(conditional.token)
    found: dict[tuple[str, str], list[str]] = {}
    for rtype, wanted in tokens.items():
        any_ids = server.search.find_ids(conn, rtype, [("identifier", ",".join(wanted))], identity)
        for token in wanted:
            found[(rtype, token)] = any_ids if len(wanted) == 1 or not any_ids else \
                server.search.find_ids(conn, rtype, [("identifier", token)], identity)
    return found
