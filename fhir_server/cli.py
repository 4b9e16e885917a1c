"""The command line: ``python -m fhir_server serve ...`` (also installed as ``fhir-server``).

``clients add / list / revoke`` manage the clients that may ask for access tokens.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from fhir_server.settings import Settings

cli = typer.Typer(help="County chronic-disease FHIR server.", no_args_is_help=True, add_completion=False)
console = Console(stderr=True)
clients_cli = typer.Typer(help="Register, list and revoke the clients that may get access tokens.",
                          no_args_is_help=True)
cli.add_typer(clients_cli, name="clients")
DEMO_ORGANIZATION = "Organization/org-county-hospital"
ALL_SCOPES = "system/*.cruds"


def _settings(database_url: str | None, host: str = "127.0.0.1", port: int = 8080) -> Settings:
    overrides = {"base_url": f"http://{host}:{port}/fhir"}
    if database_url:
        overrides["database_url"] = database_url
    return Settings(**overrides)


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="HTTP port; the FHIR base is http://HOST:PORT/fhir."),
    database_url: str = typer.Option(
        None, help="SQLAlchemy URL. Default: a SQLite file county-fhir.sqlite here "
        "(or $FHIR_DATABASE_URL). PostgreSQL: postgresql+psycopg://user:pass@host/db."),
    demo: int = typer.Option(0, help="Load a synthetic county of N patients if the database is empty."),
    workers: int = typer.Option(1, help="Worker processes, one per core is a good start (SQLite too: they "
                                "take turns writing); each new connection goes to the least busy."),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Serve every request without a token. Local development only: "
        "logs a warning at start and on every request."),
    mllp_port: int = typer.Option(None, help="Also listen for HL7 v2 over MLLP on this port (in every worker: "
                                  "each sender's messages are still applied in order)."),
) -> None:
    """Start the FHIR server."""
    from fhir_server.api.app import create_app, serving
    from fhir_server.server import start_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(database_url, host, port)
    if no_auth:
        settings.auth_enabled = False
    server = start_server(settings)
    if demo:
        load_demo(server, demo)
    if settings.auth_enabled:
        _hint_when_no_client(server)
    console.print(f"FHIR base: [bold]{settings.base_url}[/bold]  database: {server.db.url.render_as_string(hide_password=True)}")
    if workers > 1:
        from fhir_server.api.workers import serve_workers
        from fhir_server.auth.signing_key import load_or_create

        load_or_create(server.db)  # before the workers start, so that they share one key
        if mllp_port is not None:
            from adapters.hl7v2.cli import finish_interrupted_now

            finish_interrupted_now(server)  # before any worker takes a connection
        server.close()
        serve_workers(settings, host, port, workers, mllp_port)
        return
    beside = None
    if mllp_port is not None:
        from adapters.hl7v2.cli import mllp_listening

        beside = functools.partial(mllp_listening, server, host=host, port=mllp_port)
    app = serving(create_app(server), server, beside)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@cli.command()
def demo(
    patients: int = typer.Argument(..., help="Number of synthetic patients."),
    database_url: str = typer.Option(None, help="SQLAlchemy URL (default: the SQLite file)."),
    seed: int = typer.Option(2026, help="Random seed; the same seed gives the same county."),
    jobs: int = typer.Option(1, min=1, help="Processes writing residents side by side (try the number of cores)."),
) -> None:
    """Load a synthetic county into the database (even if it is not empty)."""
    from fhir_server.server import start_server

    server = start_server(_settings(database_url))
    try:
        load_demo(server, patients, seed=seed, only_if_empty=False, jobs=jobs)
    finally:
        server.close()


def load_demo(server, patients: int, seed: int = 2026, only_if_empty: bool = True, jobs: int = 1) -> None:
    from rich.progress import Progress

    from fhir_server.demo.loader import load_county

    with server.db.read() as conn:
        if only_if_empty and not server.conformance.holds_only_shipped(conn):
            console.print("Database is not empty: demo data not loaded.")
            return
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"Loading a county of {patients} patients", total=patients)
        written = load_county(server, patients, seed, jobs,
                              progress=lambda residents: progress.update(task, completed=residents))
    server.db.analyze()
    elapsed = time.perf_counter() - started
    console.print(f"Demo county loaded: {written} resources in {elapsed:.1f} s ({written / elapsed:.0f}/s)")
    _register_demo_client(server)


def _register_demo_client(server) -> None:
    """A client for the demo's county hospital with every scope, printed once (secret kept hashed)."""
    from fhir_server.auth.clients import ClientRegistry
    from fhir_server.auth.smart import endpoints

    client, secret = ClientRegistry(server.db).register("demo county hospital", DEMO_ORGANIZATION, [ALL_SCOPES])
    token_url = endpoints(server.settings.base_url)["token"]
    console.print(
        f"Demo client for the county hospital ({DEMO_ORGANIZATION}, scope {ALL_SCOPES}); "
        "the secret is shown only now:\n"
        f"  client id:     {client.client_id}\n  client secret: {secret}\n"
        f"Get a token:   curl -s -u {client.client_id}:{secret} -d grant_type=client_credentials {token_url}",
        soft_wrap=True, highlight=False,
    )


def _hint_when_no_client(server) -> None:
    from fhir_server.auth.clients import ClientRegistry

    if not any(client.active for client in ClientRegistry(server.db).all()):
        console.print("No client is registered, so no request can be authenticated yet. Register one with\n"
                      '  python -m fhir_server clients add --name NAME --organization Organization/ID --scope "..."',
                      highlight=False)


def _client_registry(database_url: str | None):
    from fhir_server.auth.clients import ClientRegistry
    from fhir_server.storage.engine import Database

    db = Database(_settings(database_url).database_url)
    db.migrate()
    return ClientRegistry(db)


_DATABASE_OPTION = typer.Option(None, help="SQLAlchemy URL (default: the SQLite file or $FHIR_DATABASE_URL).")


_JWKS_OPTION = typer.Option(
    None, exists=True, dir_okay=False,
    help="The client's public keys (JWKS, JWK or PEM) for private_key_jwt; then it gets no secret.")


@clients_cli.command("add")
def clients_add(
    name: str = typer.Option(..., help="Who the client is, e.g. 'Shimen township HIS'."),
    organization: str = typer.Option(None, help="Organization/<id> its tokens act for (or --unrestricted)."),
    unrestricted: bool = typer.Option(
        False, "--unrestricted", help="Bound to no organisation: sees every organisation's data. "
        "County platform administration only."),
    scope: str = typer.Option(..., help='Space-separated SMART scopes, e.g. "system/Observation.cruds system/Patient.rs".'),
    jwks: Path = _JWKS_OPTION,
    database_url: str = _DATABASE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the client id and secret as JSON (for scripts)."),
) -> None:
    """Register a client; prints its id and secret once (only a hash of the secret is kept)."""
    from fhir_server.auth.clients import InvalidClient, public_key_set

    try:
        keys = public_key_set(jwks.read_text()) if jwks else None
        client, secret = _client_registry(database_url).register(
            name, organization, scope.split(), keys, unrestricted=unrestricted)
    except InvalidClient as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps({"client_id": client.client_id, "client_secret": secret}))
        return
    print(f"client id:     {client.client_id}")
    if secret:
        print(f"client secret: {secret}")
        console.print("The secret is shown only now: store it safely.")
    else:
        print("authentication: private_key_jwt with the registered keys")


@clients_cli.command("list")
def clients_list(database_url: str = _DATABASE_OPTION) -> None:
    """List the registered clients (never their secrets)."""
    table = Table("client id", "name", "organization", "scopes", "auth", "created", "revoked")
    unbound = "(unrestricted)"
    for client in _client_registry(database_url).all():
        table.add_row(client.client_id, client.name, client.organization or unbound, " ".join(client.scopes),
                      "private_key_jwt" if client.jwks else "secret", f"{client.created:%Y-%m-%d %H:%M}",
                      f"{client.revoked:%Y-%m-%d %H:%M}" if client.revoked else "")
    Console(width=200).print(table)


@clients_cli.command("revoke")
def clients_revoke(
    client_id: str = typer.Argument(..., help="The client to revoke."),
    database_url: str = _DATABASE_OPTION,
) -> None:
    """Revoke a client: its token requests and the tokens it holds are refused from now on."""
    if not _client_registry(database_url).revoke(client_id):
        console.print(f"[red]No active client {client_id}[/red]")
        raise typer.Exit(1)
    print(f"revoked {client_id}")


def _register_adapters() -> None:
    from adapters.hl7v2.cli import register as register_hl7v2

    register_hl7v2(cli)  # import-hl7, hl7-replay, hl7-inbound, mllp (issue 5)
    from adapters.public_health.cda.cli import register as register_cda

    register_cda(cli)  # import-cda, export-cda (issue 6)
    from adapters.public_health.cli import register as register_follow_ups

    register_follow_ups(cli)  # import-followups, export-followups (issue 6)


_register_adapters()


def main() -> None:
    cli()
