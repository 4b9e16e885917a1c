"""Validation on write: the check ``ResourceService`` runs on every resource it is about to store.

``FHIR_VALIDATION`` (``settings.validation``) chooses what happens to a resource that claims a
county profile in ``meta.profile`` and breaks it:

- ``enforce`` (default): refused with 422 and the OperationOutcome of every issue; inside a
  transaction the whole Bundle is refused, so nothing is stored;
- ``warn``: stored, and the broken rules (element paths and messages, never values) logged;
- ``off``: not checked.

Resources that claim no county profile are not profile-checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from fhir_server.errors import Unprocessable
from fhir_server.validation.validator import ProfileValidator

__all__ = ["ValidationMode", "write_check"]

log = logging.getLogger(__name__)
ValidationMode = Literal["enforce", "warn", "off"]


def write_check(validator: ProfileValidator, mode: ValidationMode) -> Callable[[dict], None] | None:
    """The check to register in ``ResourceService.checks`` for ``mode`` (None for ``off``)."""
    if mode == "off":
        return None

    def check_profiles(resource: dict) -> None:
        profiles = validator.claimed(resource)
        if not profiles:
            return
        issues = validator.validate(resource, profiles)
        errors = [issue for issue in issues if issue.severity in ("error", "fatal")]
        if not errors:
            return
        rtype = resource.get("resourceType")
        if mode == "warn":
            log.warning("%s/%s breaks %s at %s", rtype, resource.get("id", "(new)"), ", ".join(profiles),
                        "; ".join(", ".join(issue.expression) for issue in errors))
            return
        names = ", ".join(profile.rsplit("/", 1)[-1] for profile in profiles)
        raise Unprocessable(f"{rtype} does not conform to {names}: {len(errors)} error(s)", issues=issues)

    return check_profiles
