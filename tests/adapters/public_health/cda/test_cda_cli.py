"""``python -m fhir_server import-cda FILE...`` and ``export-cda --kind --id`` on the test database."""

from __future__ import annotations

from typer.testing import CliRunner

from adapters.public_health.cda.parse import NS, parse_document
from fhir_server.auth.identity import SYSTEM
from fhir_server.cli import cli
from tests.adapters.public_health.cda.samples import BILLION_LAUGHS, downward_referral


def test_import_then_export_a_referral_by_command(county, database_url, tmp_path):
    document = tmp_path / "转诊-下转.xml"
    document.write_bytes(downward_referral(county))
    evil = tmp_path / "evil.xml"
    evil.write_bytes(BILLION_LAUGHS)
    runner = CliRunner()

    result = runner.invoke(cli, ["import-cda", str(document), str(evil), "--database-url", database_url])
    assert result.exit_code == 1  # one file refused
    assert f"{document}: referral XZ-2026-0456: created (ServiceRequest/" in result.stdout
    assert f"refused: {evil}: DOCTYPE declarations are not allowed" in result.stderr.replace("\n", "")

    again = runner.invoke(cli, ["import-cda", str(document), "--database-url", database_url])
    assert again.exit_code == 0 and "unchanged" in again.stdout

    from adapters.public_health.patient_context import search_resources

    with county.db.read() as conn:
        [request] = search_resources(county, conn, "ServiceRequest",
                                     [("identifier", "urn:oid:2.16.156.10011.1.1|XZ-2026-0456")], SYSTEM)
    out = tmp_path / "out.xml"
    exported = runner.invoke(cli, ["export-cda", "--kind", "referral", "--id", request["id"], "--out", str(out),
                                   "--database-url", database_url])
    assert exported.exit_code == 0, exported.stderr
    root = parse_document(out.read_bytes())
    assert root.xpath("string(cda:recordTarget/cda:patientRole/cda:patient/cda:name)", namespaces=NS) == "张德明"

    missing = runner.invoke(cli, ["export-cda", "--kind", "referral", "--id", "nope", "--database-url", database_url])
    assert missing.exit_code == 1 and "nope" in missing.stderr
