"""The errors the server raises, each mapped once to an HTTP status and an OperationOutcome.

Exception tree::

    FhirError                      500 exception   (never raised directly)
    ├── InvalidRequest             400 invalid     malformed body, bad query value, bad Bundle
    │   └── UnknownParameter       400 not-supported  unknown search parameter, strict handling
    ├── NotAuthenticated           401 login
    ├── Forbidden                  403 forbidden
    ├── NotFound                   404 not-found   also used for resources outside the caller's scope
    ├── MethodNotAllowed           405 not-supported
    ├── Conflict                   409 conflict    version conflict, duplicate conditional match
    │   └── MultipleMatches        412 multiple-matches  conditional create/update/delete
    ├── Gone                       410 deleted
    ├── PreconditionFailed         412 conflict    If-Match does not match the current version
    ├── PayloadTooLarge            413 too-long
    ├── UnsupportedMediaType       415 not-supported
    └── Unprocessable              422 processing  valid FHIR that breaks a business rule or profile

Each carries a list of ``Issue`` so that validators can report several problems at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: severity, code, a human message and optional FHIRPath locations."""

    severity: str
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict:
        issue: dict = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


class FhirError(Exception):
    status = 500
    issue_code = "exception"

    def __init__(self, message: str, *, issues: list[Issue] | None = None, expression: str | None = None):
        super().__init__(message)
        self.message = message
        self.issues = issues or [
            Issue("error", self.issue_code, message, (expression,) if expression else ())
        ]
        self.headers: dict[str, str] = {}


class InvalidRequest(FhirError):
    status = 400
    issue_code = "invalid"


class UnknownParameter(InvalidRequest):
    issue_code = "not-supported"


class NotAuthenticated(FhirError):
    status = 401
    issue_code = "login"


class Forbidden(FhirError):
    status = 403
    issue_code = "forbidden"


class NotFound(FhirError):
    status = 404
    issue_code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    issue_code = "not-supported"


class Conflict(FhirError):
    status = 409
    issue_code = "conflict"


class MultipleMatches(Conflict):
    status = 412
    issue_code = "multiple-matches"


class Gone(FhirError):
    status = 410
    issue_code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    issue_code = "conflict"


class PayloadTooLarge(FhirError):
    status = 413
    issue_code = "too-long"


class UnsupportedMediaType(FhirError):
    status = 415
    issue_code = "not-supported"


class Unprocessable(FhirError):
    status = 422
    issue_code = "processing"


def operation_outcome(issues: list[Issue]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def information_outcome(message: str, code: str = "informational") -> dict:
    return operation_outcome([Issue("information", code, message)])


@dataclass
class Warnings:
    """Non-fatal issues collected while serving a request (e.g. ignored search parameters)."""

    issues: list[Issue] = field(default_factory=list)

    def add(self, message: str, code: str = "not-supported") -> None:
        self.issues.append(Issue("warning", code, message))
