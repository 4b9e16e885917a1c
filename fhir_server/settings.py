"""One settings object, read from environment variables prefixed ``FHIR_``.

Command-line options of ``python -m fhir_server serve`` override the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_")

    database_url: str = "sqlite:///county-fhir.sqlite"
    base_url: str = "http://127.0.0.1:8080/fhir"
    profiles_dir: Path = PROJECT_ROOT / "profiles"
    terminology_dir: Path = PROJECT_ROOT / "terminology"
    # Requests larger than this are refused with 413 before they are parsed.
    max_body_bytes: int = 20 * 1024 * 1024
    default_page_size: int = 20
    max_page_size: int = 1000
    # Entries a batch or transaction Bundle may hold.
    max_bundle_entries: int = 10_000
    # Resources per batch when $reindex walks the store.
    reindex_batch_size: int = 500


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
