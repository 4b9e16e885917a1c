"""One settings object, read from environment variables prefixed ``FHIR_``.

Command-line options of ``python -m fhir_server serve`` override the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_")

    database_url: str = "sqlite:///county-fhir.sqlite"
    base_url: str = "http://127.0.0.1:8080/fhir"
    profiles_dir: Path = PROJECT_ROOT / "profiles"
    terminology_dir: Path = PROJECT_ROOT / "terminology"
    # StructureDefinitions served read-only (the examples/ folder inside is not loaded).
    local_profiles_dir: Path = PROJECT_ROOT / "profiles" / "local"
    # Requests larger than this are refused with 413 before they are parsed.
    max_body_bytes: int = 20 * 1024 * 1024
    default_page_size: int = 20
    max_page_size: int = 1000
    # Entries a batch or transaction Bundle may hold.
    max_bundle_entries: int = 10_000
    # Resources per batch when $reindex walks the store.
    reindex_batch_size: int = 500
    # Profile validation on write (fhir_server/validation/on_write.py): "enforce" refuses a
    # resource that breaks a county profile it claims (422), "warn" stores it and logs, "off".
    validation: Literal["enforce", "warn", "off"] = "enforce"

    # Authentication (fhir_server/auth). Off only for local development: serve --no-auth.
    auth_enabled: bool = True
    # Lifetime of the access tokens the server issues (15 minutes).
    auth_token_lifetime_seconds: int = 900
    # An external OpenID Connect provider whose access tokens are accepted too (all three needed).
    auth_jwks_url: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    # The claim of an external token that names the caller's organisation ("Organization/<id>").
    auth_organization_claim: str = "organization"
    # Browser origins allowed by CORS, comma-separated ("*" for any); empty: CORS closed.
    cors_origins: str = ""
    # Strict-Transport-Security max-age in seconds; 0 sends no header (set it behind TLS).
    hsts_max_age: int = 0
    # How often queued audit events of reads (and the journal of writes) become AuditEvents;
    # they are also written when the server stops (fhir_server/auth/audit.py).
    audit_flush_seconds: float = 1.0
    # Where HL7 v2 deliveries wait until their row is written (adapters/hl7v2/spool.py). Default:
    # beside a SQLite file; for PostgreSQL, hl7-spool-<database> in the working directory.
    hl7_spool_dir: Path | None = None
    # Threads that apply MLLP messages in each server process (adapters/hl7v2/pipeline.py,
    # InboundChannel). One, as an integration engine's channel has by default: a process takes
    # its messages one after another; the worker processes run side by side.
    mllp_threads: int = 1

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]
