"""The HL7 v2 commands of ``python -m fhir_server`` (registered by ``fhir_server/cli.py``).

    import-hl7 FILE... [--database-url URL]     files (FHS/BHS batches too) through the pipeline
    hl7-replay [ID...] [--status error,refused] [--sender 'APP|FACILITY']
    hl7-inbound [--status S] [--sender S]       list the inbound store
    mllp --port P [--host H]                    the MLLP listener on its own
    serve ... --mllp-port P                     the listener beside the HTTP server, in every worker
                                                (mllp_listening, run by the app's lifespan)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from adapters.hl7v2.mllp import DEFAULT_MAX_MESSAGE_BYTES, start_listener

console = Console(stderr=True)
log = logging.getLogger(__name__)
_DATABASE_OPTION = typer.Option(None, help="SQLAlchemy URL (default: the SQLite file or $FHIR_DATABASE_URL).")
_SUMMARY_ORDER = ("processed", "error", "refused", "duplicate", "not stored")


def _server(database_url: str | None):
    from fhir_server.cli import _settings
    from fhir_server.server import Server

    return Server(_settings(database_url))


_FILES_ARGUMENT = typer.Argument(..., exists=True, dir_okay=False, help="HL7 v2 files (single messages or "
                                 "FHS/BHS batches; \\r, \\n or \\r\\n segment ends).")
_IDS_ARGUMENT = typer.Argument(None, help="Inbound message ids (default: every one in --status).")


def import_hl7(
    files: list[Path] = _FILES_ARGUMENT,
    database_url: str = _DATABASE_OPTION,
) -> None:
    """Import HL7 v2 messages from files, each through the same pipeline as over MLLP.

    Every message is stored, translated and written with its Provenance; its outcome and
    ACK are kept in the inbound store."""
    from adapters.hl7v2.batch_file import split_messages
    from adapters.hl7v2.pipeline import pipeline_for

    batches = []
    for path in files:
        batch = split_messages(path.read_bytes())
        if batch.stray_lines:
            console.print(f"[yellow]{path}: {batch.stray_lines} line(s) outside any message were skipped[/yellow]")
        if batch.declared_counts and sum(batch.declared_counts) != len(batch.messages):
            console.print(f"[yellow]{path}: the batch trailers (BTS-1) count {sum(batch.declared_counts)} "
                          f"messages, the file holds {len(batch.messages)}[/yellow]")
        batches.append((path, batch.messages))
    total = sum(len(messages) for _, messages in batches)
    server = _server(database_url)
    pipeline = pipeline_for(server)
    counts: dict[str, int] = {}
    failures: list[tuple[str, int | None, str]] = []
    started = time.perf_counter()
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("Importing HL7 v2 messages", total=total)
            for path, messages in batches:
                for raw in messages:
                    outcome = pipeline.receive(raw, source=f"file {path.name}")
                    counts[outcome.status] = counts.get(outcome.status, 0) + 1
                    if outcome.status in ("error", "refused", "not stored"):
                        reason = "; ".join(p.text for p in outcome.problems if p.severity == "E")[:200]
                        failures.append((path.name, outcome.record_id, reason))
                    progress.advance(task)
    finally:
        server.close()
    elapsed = time.perf_counter() - started
    print(f"{total} HL7 v2 messages from {len(files)} file(s) in {elapsed:.1f} s")
    table = Table("outcome", "messages")
    for status in _SUMMARY_ORDER:
        table.add_row(status, str(counts.get(status, 0)))
    Console().print(table)
    for name, record_id, reason in failures[:20]:
        console.print(f"  {name}: inbound message {record_id}: {reason}", highlight=False)
    if len(failures) > 20:
        console.print(f"  ... and {len(failures) - 20} more (python -m fhir_server hl7-inbound --status error)")
    if failures:
        console.print("Fix the mapping or code table, then: python -m fhir_server hl7-replay")
        raise typer.Exit(1)


def hl7_replay(
    ids: list[int] = _IDS_ARGUMENT,
    status: str = typer.Option("error", help="Which failed messages to replay: error, refused, received "
                               "(comma-separated)."),
    sender: str = typer.Option(None, help="Only this sender, as 'MSH-3|MSH-4'."),
    database_url: str = _DATABASE_OPTION,
) -> None:
    """Replay failed HL7 v2 messages from the inbound store (after fixing a mapping or code table)."""
    from adapters.hl7v2.pipeline import pipeline_for
    from adapters.hl7v2.replay import replay_records, replayable_ids

    server = _server(database_url)
    try:
        pipeline = pipeline_for(server)
        if not ids:
            ids = replayable_ids(pipeline, statuses=[s.strip() for s in status.split(",")], sender=sender)
        results = replay_records(pipeline, ids)
    finally:
        server.close()
    table = Table("id", "result", "ACK", "resources / reason")
    for r in results:
        if r.outcome is None:
            table.add_row(str(r.record_id), "not replayed", "", r.reason or "")
        else:
            detail = (", ".join(r.outcome.resources[:4]) if r.outcome.status == "processed"
                      else "; ".join(p.text for p in r.outcome.problems if p.severity == "E"))
            table.add_row(str(r.record_id), r.outcome.status, r.outcome.ack_code or "", detail[:160])
    Console(width=200).print(table)
    processed = sum(1 for r in results if r.outcome and r.outcome.status == "processed")
    console.print(f"{len(results)} replayed: {processed} processed, {len(results) - processed} still failing")
    if processed < len(results):
        raise typer.Exit(1)


def hl7_inbound(
    status: str = typer.Option(None, help="received, processed, error, refused or duplicate (comma-separated)."),
    sender: str = typer.Option(None, help="Only this sender, as 'MSH-3|MSH-4'."),
    limit: int = typer.Option(50, help="At most this many."),
    database_url: str = _DATABASE_OPTION,
) -> None:
    """List the inbound HL7 v2 store (newest last), with the count per status."""
    from adapters.hl7v2.inbound_store import InboundStore
    from fhir_server.cli import _settings
    from fhir_server.storage.engine import Database

    db = Database(_settings(database_url).database_url)
    db.migrate()
    store = InboundStore(db)
    statuses = [s.strip() for s in status.split(",")] if status else None
    table = Table("id", "received (UTC)", "sender", "type", "control id", "status", "ACK", "problems")
    for r in store.find(status=statuses, sender=sender, limit=limit):
        problems = "; ".join(p["text"] for p in r.problems if p.get("severity") == "E")
        table.add_row(str(r.id), f"{r.received_at:%Y-%m-%d %H:%M:%S}", r.sender, r.message_type or "",
                      r.control_id or "", r.status, r.ack_code or "", problems[:100])
    Console(width=200).print(table)
    console.print("  ".join(f"{k}: {v}" for k, v in sorted(store.counts().items())))
    db.dispose()


def mllp(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(2575, help="MLLP port."),
    database_url: str = _DATABASE_OPTION,
    max_message_bytes: int = typer.Option(DEFAULT_MAX_MESSAGE_BYTES, help="Larger messages get a NAK."),
) -> None:
    """Run the MLLP listener on its own (no HTTP server)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = _server(database_url)
    try:
        asyncio.run(_run_listener_until_stopped(server, host, port, max_message_bytes))
    finally:
        server.close()


async def _run_listener_until_stopped(server, host: str, port: int, max_message_bytes: int) -> None:
    async with mllp_listening(server, host=host, port=port, max_message_bytes=max_message_bytes):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


@contextlib.asynccontextmanager
async def mllp_listening(server, *, host: str | None = None, port: int | None = None, sock=None,
                         max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                         finish_interrupted: bool = True) -> AsyncIterator[None]:
    """The MLLP listener on ``host:port`` (or the listening socket ``sock``) for the length of
    the block, its messages going through the server's pipeline. With ``finish_interrupted``,
    the messages a stopped process left unfinished are written first, before any connection
    is taken."""
    from adapters.hl7v2.pipeline import InboundChannel, pipeline_for

    channel = InboundChannel(pipeline_for(server), threads=server.settings.mllp_threads)
    try:
        if finish_interrupted:
            await asyncio.to_thread(finish_interrupted_now, server)
        listener = await start_listener(channel.handle, host, port, sock=sock, max_message_bytes=max_message_bytes)
        where = sock.getsockname() if sock is not None else (host, port)
        console.print(f"MLLP listener on {where[0]}:{where[1]}")
        try:
            yield
        finally:
            listener.close()
            await listener.wait_closed()
    finally:
        channel.close()


def finish_interrupted_now(server) -> None:
    """Write the messages a stopped process stored but never finished (``replay.finish_interrupted``)."""
    from adapters.hl7v2.pipeline import pipeline_for
    from adapters.hl7v2.replay import finish_interrupted

    results = finish_interrupted(pipeline_for(server))
    if results:
        done = sum(1 for r in results if r.outcome is not None and r.outcome.status == "processed")
        console.print(f"{len(results)} message(s) a stopped process left unfinished: {done} written now, "
                      f"{len(results) - done} kept with their reason (see hl7-replay)")


def register(cli: typer.Typer) -> None:
    """Add the HL7 v2 commands to the server's command line."""
    cli.command("import-hl7")(import_hl7)
    cli.command("hl7-replay")(hl7_replay)
    cli.command("hl7-inbound")(hl7_inbound)
    cli.command("mllp")(mllp)
