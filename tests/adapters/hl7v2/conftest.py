"""Fixtures of the HL7 v2 adapter tests."""

from __future__ import annotations

import shutil

import pytest

from adapters.hl7v2 import mapping_tables


@pytest.fixture
def mappings(tmp_path, monkeypatch):
    """A copy of mappings/hl7v2 that the translation reads, to change a table in (never the repo's)."""
    directory = tmp_path / "hl7v2"
    shutil.copytree(mapping_tables.MAPPINGS_DIR, directory)
    monkeypatch.setattr(mapping_tables.MappingTables.__init__, "__defaults__", (directory,))
    mapping_tables.tables.cache_clear()
    yield directory
    monkeypatch.undo()
    mapping_tables.tables.cache_clear()
