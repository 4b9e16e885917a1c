"""Who is calling: what authentication established, handed down to every service call.

Every read and write path takes an ``Identity``. The HTTP layer builds one from the access
token; the CLI, the demo loader and the adapters use ``SYSTEM`` or the identity of the
sending system.

Scopes follow SMART on FHIR: v2 ``system/Observation.rs`` (c create, r read, u update,
d delete, s search) and v1 ``user/Patient.read`` / ``.write`` / ``.*``; the context is
``system``, ``user`` or ``patient``, the type may be ``*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

ACTIONS = "cruds"
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
        permission = permission.split("?", 1)[0]  # v2 query restrictions are not supported
        if permission in _V1:
            actions = _V1[permission]
        elif permission and all(a in ACTIONS for a in permission):
            actions = permission
        else:
            return None
        return cls(context, res_type, frozenset(actions))


@dataclass(frozen=True)
class Identity:
    subject: str  # client id or user id; "system" for the server's own jobs
    organization: str | None  # "Organization/<id>" the caller acts for; None when not bound
    scopes: tuple[str, ...]  # the granted scopes, as written in the token
    patient: str | None = None  # "Patient/<id>" for patient/ scopes (SMART launch context)
    unrestricted: bool = False  # sees everything: the server's own jobs, or serve --no-auth

    @cached_property
    def resource_scopes(self) -> tuple[Scope, ...]:
        return tuple(s for s in map(Scope.parse, self.scopes) if s is not None)

    def allows(self, res_type: str, action: str) -> bool:
        """Whether the scopes grant ``action`` (one of c r u d s) on ``res_type``."""
        return any(
            action in s.actions and s.res_type in ("*", res_type) for s in self.resource_scopes
        )


SYSTEM = Identity("system", None, ("system/*.cruds",), unrestricted=True)
