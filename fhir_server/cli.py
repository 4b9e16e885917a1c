"""The command line: ``python -m fhir_server serve ...`` (also installed as ``fhir-server``)."""

from __future__ import annotations

import logging
import os
import socket
import time

import typer
import uvicorn
from rich.console import Console

from fhir_server.settings import Settings

cli = typer.Typer(help="County chronic-disease FHIR server.", no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


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
    workers: int = typer.Option(1, help="Worker processes (PostgreSQL; SQLite works best with 1)."),
) -> None:
    """Start the FHIR server."""
    from fhir_server.api.app import create_app
    from fhir_server.server import Server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(database_url, host, port)
    server = Server(settings)
    if demo:
        load_demo(server, demo)
    console.print(f"FHIR base: [bold]{settings.base_url}[/bold]  database: {server.db.url.render_as_string(hide_password=True)}")
    if workers > 1:
        os.environ["FHIR_DATABASE_URL"] = settings.database_url
        server.close()
        _serve_workers(host, port, workers)
    else:
        uvicorn.run(create_app(server), host=host, port=port, log_level="warning", access_log=False)


def _serve_workers(host: str, port: int, workers: int) -> None:
    """Several worker processes on one listening socket.

    The socket is bound here with ``IPPROTO_TCP`` rather than by uvicorn: uvicorn's own
    multi-worker listener has ``proto`` 0, so asyncio never sets TCP_NODELAY on accepted
    connections and every keep-alive request waits ~40 ms for a delayed ACK
    (uvicorn issue #3149).
    """
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("fhir_server.api.asgi:app", host=host, port=port, workers=workers,
                            log_level="warning", access_log=False)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.set_inheritable(True)
    Multiprocess(config, sockets=[listener]).run()


@cli.command()
def demo(
    patients: int = typer.Argument(..., help="Number of synthetic patients."),
    database_url: str = typer.Option(None, help="SQLAlchemy URL (default: the SQLite file)."),
    seed: int = typer.Option(2026, help="Random seed; the same seed gives the same county."),
) -> None:
    """Load a synthetic county into the database (even if it is not empty)."""
    from fhir_server.server import Server

    server = Server(_settings(database_url))
    load_demo(server, patients, seed=seed, only_if_empty=False)


def load_demo(server, patients: int, seed: int = 2026, only_if_empty: bool = True) -> None:
    from rich.progress import Progress

    from fhir_server.demo.county import generate_county
    from fhir_server.demo.loader import write_batch

    with server.db.read() as conn:
        if only_if_empty and not server.store.is_empty(conn):
            console.print("Database is not empty: demo data not loaded.")
            return
    started, written = time.perf_counter(), 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"Loading a county of {patients} patients", total=patients)
        for batch in generate_county(patients, seed=seed):
            written += write_batch(server, batch)
            progress.advance(task, sum(1 for r in batch if r["resourceType"] == "Patient"))
    server.db.analyze()
    elapsed = time.perf_counter() - started
    console.print(f"Demo county loaded: {written} resources in {elapsed:.1f} s ({written / elapsed:.0f}/s)")


def main() -> None:
    cli()
