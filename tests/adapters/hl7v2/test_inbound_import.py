"""``python -m fhir_server import-hl7 FILE...``: files through the same pipeline and store."""

from __future__ import annotations

from hl7_inbound_messages import oru_r01, unsupported
from typer.testing import CliRunner

from adapters.hl7v2.pipeline import InboundPipeline
from fhir_server.cli import cli


def test_a_batch_file_with_unix_line_ends_is_imported_message_by_message(server, settings, tmp_path):
    batch = ("FHS|^~\\&|LIS|县人民医院\nBHS|^~\\&|LIS|县人民医院\n"
             + oru_r01("F-1", patient=1).replace("\r", "\n")
             + oru_r01("F-2", patient=2).replace("\r", "\n")
             + oru_r01("F-1", patient=1).replace("\r", "\n")  # sent twice in the file
             + "BTS|3\nFTS|1\n")
    windows = oru_r01("F-3", patient=3).replace("\r", "\r\n").encode("gb18030")
    (tmp_path / "batch.hl7").write_text(batch, encoding="utf-8")
    (tmp_path / "windows.hl7").write_bytes(
        windows.replace(b"||2.5|||||UNICODE UTF-8", b"||2.5|||||GB18030"))
    (tmp_path / "other.hl7").write_bytes(unsupported("Q-1"))

    result = CliRunner().invoke(cli, ["import-hl7", str(tmp_path / "batch.hl7"), str(tmp_path / "windows.hl7"),
                                      str(tmp_path / "other.hl7"), "--database-url", settings.database_url])
    assert result.exit_code == 1, result.output  # one message was refused
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip()
             for line in result.output.splitlines() if line.count("│") == 3}
    assert lines["processed"] == "3"
    assert lines["duplicate"] == "1"
    assert lines["refused"] == "1"
    assert lines["error"] == "0"
    assert "hl7-replay" in result.output

    store = InboundPipeline(server).store
    records = store.find()
    assert [(r.control_id, r.status) for r in records] == [
        ("F-1", "processed"), ("F-2", "processed"), ("F-1", "duplicate"), ("F-3", "processed"), ("Q-1", "refused")]
    assert records[0].source == "file batch.hl7"
    assert records[0].raw.count(b"\r") == 8 and b"\n" not in records[0].raw  # segments joined by \r
    assert records[3].charset == "gb18030"
    assert sum(r.startswith("Observation/") for r in records[3].resources) == 5


def test_a_clean_import_exits_zero(server, settings, tmp_path):
    (tmp_path / "one.hl7").write_text(oru_r01("C-1"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["import-hl7", str(tmp_path / "one.hl7"), "--database-url", settings.database_url])
    assert result.exit_code == 0, result.output
    assert "1 HL7 v2 messages from 1 file(s)" in result.output
