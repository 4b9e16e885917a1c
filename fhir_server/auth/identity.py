"""Who is calling: what authentication established, handed down to every service call.

Every read and write path takes an ``Identity``. The HTTP layer builds one from the access
token; the CLI, the demo loader and the adapters use ``SYSTEM`` or the identity of the
sending system.

Scopes follow SMART on FHIR: v2 ``system/Observation.rs`` (c create, r read, u update,
d delete, s search) and v1 ``user/Patient.read`` / ``.write`` / ``.*``; the context is
``system``, ``user`` or ``patient``, the type may be ``*``. A v2 scope with a query
restriction (``system/Observation.rs?category=laboratory``) is not supported and grants
nothing: ignoring only the restriction would grant more than was meant.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

ACTIONS = "cruds"
# Types a ``*`` registration never yields a token scope for: a client becomes an auditor only
# by being registered with a scope that names AuditEvent (see auth/access.py).
NAMED_ONLY = frozenset({"AuditEvent"})
_V1 = {"read": "rs", "write": "cud", "*": ACTIONS}


@dataclass(frozen=True)
class Scope:
    context: str  # "system", "user" or "patient"
    res_type: str  # a resource type or "*"
    actions: frozenset[str]  # subset of "cruds"

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """The resource scope written as ``text``, or None for other scopes (openid, launch...)."""
        context, slash, rest = text.partition("/")
        res_type, dot, permission = rest.partition(".")
        if not slash or not dot or context not in ("system", "user", "patient") or not res_type:
            return None
        if permission in _V1:
            actions = _V1[permission]
        elif permission and all(a in ACTIONS for a in permission):
            actions = permission
        else:
            return None
        return cls(context, res_type, frozenset(actions))

    def text(self) -> str:
        """The scope in SMART v2 syntax, actions in the canonical ``cruds`` order."""
        return f"{self.context}/{self.res_type}.{''.join(a for a in ACTIONS if a in self.actions)}"


def grant_scopes(requested: list[str], allowed: list[str]) -> list[str]:
    """The requested resource scopes narrowed to what the ``allowed`` scopes permit.

    ``system/Observation.rs`` asked by a client allowed ``system/*.cruds`` is granted as asked;
    ``system/*.rs`` asked by a client allowed ``system/Observation.cruds`` becomes
    ``system/Observation.rs``. A scope granted in full keeps the form it was asked in (v1 or v2);
    other scopes (openid, launch...) and scopes with query restrictions are never granted, nor
    a ``NAMED_ONLY`` type from a ``*`` registration.
    """
    granted: list[str] = []
    allowed_scopes = [s for s in map(Scope.parse, allowed) if s is not None]
    for text in requested:
        asked = Scope.parse(text)
        if asked is None:
            continue
        for permitted in allowed_scopes:
            if permitted.context != asked.context:
                continue
            if permitted.res_type == "*" and asked.res_type not in NAMED_ONLY:
                res_type = asked.res_type
            elif asked.res_type in ("*", permitted.res_type):
                res_type = permitted.res_type
            else:
                continue
            actions = asked.actions & permitted.actions
            if not actions:
                continue
            narrowed = Scope(asked.context, res_type, frozenset(actions))
            scope = text if narrowed == asked else narrowed.text()
            if scope not in granted:
                granted.append(scope)
    return granted


@dataclass(frozen=True)
class Identity:
    subject: str  # client id or user id; "system" for the server's own jobs
    organization: str | None  # "Organization/<id>" the caller acts for; None when not bound
    scopes: tuple[str, ...]  # the granted scopes, as written in the token
    patient: str | None = None  # "Patient/<id>" for patient/ scopes (SMART launch context)
    unrestricted: bool = False  # bound to no organisation: sees every organisation's data
    audited: bool = True  # False only for the server's own jobs and serve --no-auth (no agent)

    @cached_property
    def resource_scopes(self) -> tuple[Scope, ...]:
        return tuple(s for s in map(Scope.parse, self.scopes) if s is not None)

    def allows(self, res_type: str, action: str) -> bool:
        """Whether the scopes grant ``action`` (one of c r u d s) on ``res_type``."""
        return any(
            action in s.actions and s.res_type in ("*", res_type) for s in self.resource_scopes
        )


# The server's own jobs: every organisation, every type (AuditEvent named, see NAMED_ONLY).
SYSTEM = Identity("system", None, ("system/*.cruds", "system/AuditEvent.rs"), unrestricted=True, audited=False)
