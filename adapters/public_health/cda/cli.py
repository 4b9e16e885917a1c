"""The CDA commands of ``python -m fhir_server`` (registered by ``fhir_server/cli.py``).

    import-cda FILE... [--database-url URL]
        each file one document (follow-up or referral record), one transaction each; a line
        per file: created / updated / unchanged, or the reason it was refused. Exit code 1 when
        any file was refused.
    export-cda --kind hypertension-follow-up|diabetes-follow-up|referral --id ID [--out FILE]
        the document of Encounter/ID (follow-ups) or ServiceRequest/ID (referral), UTF-8, to
        FILE or standard output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)
_DATABASE_OPTION = typer.Option(None, help="SQLAlchemy URL (default: the SQLite file or $FHIR_DATABASE_URL).")
_FILES_ARGUMENT = typer.Argument(..., exists=True, dir_okay=False, help="CDA documents (XML), one per file.")
_KIND_OPTION = typer.Option(..., "--kind", help="hypertension-follow-up, diabetes-follow-up or referral.")
_ID_OPTION = typer.Option(..., "--id", help="Encounter id (follow-ups) or ServiceRequest id (referral).")
_OUT_OPTION = typer.Option(None, "--out", help="Write the document to this file (default: standard output).")


def _server(database_url: str | None):
    from fhir_server.cli import _settings
    from fhir_server.server import start_server

    return start_server(_settings(database_url))


def import_cda(files: list[Path] = _FILES_ARGUMENT, database_url: str = _DATABASE_OPTION) -> None:
    """Import CDA documents (WS/T 483 hypertension / diabetes follow-up, referral record)."""
    from adapters.public_health.cda.document_import import import_document
    from fhir_server.errors import FhirError

    server = _server(database_url)
    refused = 0
    try:
        for path in files:
            try:
                result = import_document(server, path.read_bytes(), what=str(path))
            except FhirError as exc:
                refused += 1
                message = exc.message if exc.message.startswith(str(path)) else f"{path}: {exc.message}"
                console.print(f"refused: {message}", style="red", markup=False, soft_wrap=True)
                continue
            written = ", ".join(result.resources)
            print(f"{path}: {result.kind} {result.document_id or ''}: {result.status} ({written})")
            for note in result.notes:
                print(f"{path}:   {note}")
    finally:
        server.close()
    if refused:
        raise typer.Exit(1)


def export_cda(kind: str = _KIND_OPTION, resource_id: str = _ID_OPTION, out: Path = _OUT_OPTION,
               database_url: str = _DATABASE_OPTION) -> None:
    """Export one CDA document from what the server holds."""
    from adapters.public_health.cda.document_export import export_document
    from fhir_server.errors import FhirError

    server = _server(database_url)
    try:
        document = export_document(server, kind, resource_id)
    except FhirError as exc:
        console.print(exc.message, style="red", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        server.close()
    if out is None:
        sys.stdout.buffer.write(document)
    else:
        out.write_bytes(document)
        console.print(f"{kind} document written to {out}")


def register(cli: typer.Typer) -> None:
    """Add the CDA commands to the server's command line."""
    cli.command("import-cda")(import_cda)
    cli.command("export-cda")(export_cda)
