"""Who is calling: what authentication established, handed down to every service call.

Every read and write path takes an ``Identity``. The HTTP layer builds one from the access
token; the CLI, the demo loader and the adapters use ``SYSTEM`` or the identity of the
sending system.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    subject: str  # client id or user id; "system" for the server's own jobs
    organization: str | None  # "Organization/<id>" the caller acts for; None when not bound
    scopes: tuple[str, ...]  # the granted scopes, as written in the token
    patient: str | None = None  # "Patient/<id>" for patient/ scopes (SMART launch context)
    unrestricted: bool = False  # sees everything: the server's own jobs, or serve --no-auth


SYSTEM = Identity("system", None, ("system/*.cruds",), unrestricted=True)
