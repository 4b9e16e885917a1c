"""Terminology test fixtures: the shipped terminology, and the store with it loaded."""

from __future__ import annotations

import pytest

from fhir_server.settings import PROJECT_ROOT
from fhir_server.terminology import TerminologyService

TERMINOLOGY_DIR = PROJECT_ROOT / "terminology"


@pytest.fixture(scope="session")
def terminology() -> TerminologyService:
    return TerminologyService.load(TERMINOLOGY_DIR)


@pytest.fixture
def shipped(server):
    """The shipped conformance resources, stored again after the per-test truncation."""
    return server.conformance.load()
