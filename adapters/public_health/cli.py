"""The follow-up commands of ``python -m fhir_server`` (registered by ``fhir_server/cli.py``).

    import-followups FILE --kind hypertension|diabetes [--column-map FILE] [--workers N] [--database-url URL]
        CSV (UTF-8 or GB18030), .xlsx or JSON; a progress bar, then one line per row
        (line, status, reason or what was written) and the counts. ``--problems-only`` prints
        only the rows that are not created / updated / unchanged. Exit code 1 when a row
        could not be used (the other rows are in).
    export-followups --organization ORG --from DATE --to DATE --format csv|xlsx|json --out PATH
        the follow-up records, lab results and hospital visits of the patients ORG manages;
        csv writes one file per table into the directory PATH.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)
_DATABASE_OPTION = typer.Option(None, help="SQLAlchemy URL (default: the SQLite file or $FHIR_DATABASE_URL).")
_FILE_ARGUMENT = typer.Argument(..., exists=True, dir_okay=False, help="A CSV, .xlsx or JSON file of follow-up records.")
_KIND_OPTION = typer.Option(..., "--kind", help="hypertension or diabetes (which national form).")
_COLUMN_MAP_OPTION = typer.Option(None, "--column-map", exists=True, dir_okay=False,
                                  help="Extra column names: a CSV 'header,field' (or columns.csv's shape).")
_PROBLEMS_OPTION = typer.Option(False, "--problems-only", help="Print only rows that were not written.")
_WORKERS_OPTION = typer.Option(1, "--workers", min=1, help="Processes writing the records (each patient in one).")
_ORG_OPTION = typer.Option(..., "--organization", help="Organization/<id> (or the id): it and the ones under it.")
_FROM_OPTION = typer.Option(..., "--from", help="First day of the period (YYYY-MM-DD).")
_TO_OPTION = typer.Option(..., "--to", help="Last day of the period (YYYY-MM-DD).")
_FORMAT_OPTION = typer.Option("xlsx", "--format", help="csv, xlsx or json.")
_OUT_OPTION = typer.Option(..., "--out", help="Output file (xlsx, json) or directory (csv).")
_ENCODING_OPTION = typer.Option("utf-8", "--encoding", help="CSV encoding: utf-8 (with BOM) or gb18030.")


def _server(database_url: str | None):
    from fhir_server.cli import _settings
    from fhir_server.server import start_server

    return start_server(_settings(database_url))


def import_followups(file: Path = _FILE_ARGUMENT, kind: str = _KIND_OPTION, column_map: Path = _COLUMN_MAP_OPTION,
                     database_url: str = _DATABASE_OPTION, problems_only: bool = _PROBLEMS_OPTION,
                     workers: int = _WORKERS_OPTION) -> None:
    """Import follow-up records (高血压 / 2型糖尿病患者随访服务记录表) from the public-health system."""
    from adapters.public_health.follow_up_import import import_file
    from adapters.public_health.follow_up_record import KINDS, RecordError

    if kind not in KINDS:
        console.print(f"--kind must be one of {', '.join(KINDS)}", style="red")
        raise typer.Exit(2)
    server = _server(database_url)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task(f"Importing {file.name}", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            try:
                report = import_file(server, file.read_bytes(), kind=kind, name=file.name,
                                     column_map_file=column_map, progress=advance, workers=workers)
            except (RecordError, ValueError) as exc:
                console.print(f"{file}: {exc}", style="red", markup=False)
                raise typer.Exit(2) from None
    finally:
        server.close()
    for row in report.rows:
        if problems_only and row.status in ("created", "updated", "unchanged"):
            continue
        detail = row.reason or row.encounter or ""
        print(f"{file.name}:{row.line}: {row.status}: {detail}")
        for note in row.notes:
            print(f"{file.name}:{row.line}:   {note}")
    if report.unknown_headers:
        console.print("columns not in the column map (ignored): " + ", ".join(report.unknown_headers), markup=False)
    counts = ", ".join(f"{n} {status}" for status, n in report.counts.items() if n)
    encoding = f", {report.encoding}" if report.encoding else ""
    console.print(f"{file.name} ({report.format}{encoding}): {len(report.rows)} rows: {counts}", markup=False)
    if report.counts["error"]:
        raise typer.Exit(1)


def export_followups(organization: str = _ORG_OPTION, start: str = _FROM_OPTION, end: str = _TO_OPTION,
                     fmt: str = _FORMAT_OPTION, out: Path = _OUT_OPTION, encoding: str = _ENCODING_OPTION,
                     database_url: str = _DATABASE_OPTION) -> None:
    """Export follow-up records, lab results and hospital visits for the public-health system."""
    from adapters.public_health.export import FORMATS, export, to_csv, to_json, to_xlsx

    if fmt not in FORMATS:
        console.print(f"--format must be one of {', '.join(FORMATS)}", style="red")
        raise typer.Exit(2)
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError as exc:
        console.print(f"--from / --to: {exc}", style="red")
        raise typer.Exit(2) from None
    server = _server(database_url)
    try:
        result = export(server, organization, first, last)
    finally:
        server.close()
    if fmt == "csv":
        out.mkdir(parents=True, exist_ok=True)
        for name, table in result.tables.items():
            (out / f"{name}.csv").write_bytes(to_csv(table, encoding))
    else:
        out.write_bytes(to_xlsx(result) if fmt == "xlsx" else to_json(result))
    sizes = ", ".join(f"{len(t.rows)} {name}" for name, t in result.tables.items())
    console.print(f"{result.organization} {first}..{last}: {sizes} -> {out}", markup=False)


def register(cli: typer.Typer) -> None:
    cli.command("import-followups")(import_followups)
    cli.command("export-followups")(export_followups)
