from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapters.public_health.county import load_county

FILES = Path(__file__).parent / "files"


@pytest.fixture
def county(server):
    load_county(server)
    return server
