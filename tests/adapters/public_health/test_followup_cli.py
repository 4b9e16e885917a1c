"""``python -m fhir_server import-followups`` and ``export-followups`` against the test database."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fhir_server.cli import cli
from tests.adapters.public_health.conftest import FILES


def test_import_prints_a_line_per_row_and_fails_on_bad_rows(county):
    url = county.settings.database_url
    result = CliRunner().invoke(cli, ["import-followups", str(FILES / "hypertension.csv"), "--kind", "hypertension",
                                      "--database-url", url])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stdout.splitlines() if not line.startswith("hypertension.csv:3:   ")]
    assert lines[0] == "hypertension.csv:2: superseded: line 8 records this visit again and is the one written"
    assert lines[3] == "hypertension.csv:5: error: 随访日期: '2025-13-01' is not a date of the calendar"
    assert "urgent-referral Task for 城关镇卫生院, due 2025-06-26" in result.stdout
    assert "8 rows: 4 created, 2 superseded, 2 error" in result.stderr

    again = CliRunner().invoke(cli, ["import-followups", str(FILES / "diabetes-gb18030.csv"), "--kind", "diabetes",
                                     "--database-url", url, "--problems-only"])
    assert again.stdout.splitlines() == [  # the duplicate (line 5, unchanged) is not a problem
        "diabetes-gb18030.csv:6: error: 随访日期: '2025-02-30' is not a date of the calendar"]
    assert "(csv, gb18030)" in again.stderr


def test_import_with_a_site_column_map(county, tmp_path):
    data = tmp_path / "site.csv"
    data.write_text("档案号,随访日期,高压,低压\n43053010110100001,2025-08-01,128,82\n", encoding="utf-8")
    site_map = tmp_path / "map.csv"
    site_map.write_text("header,field\n档案号,health_record_number\n高压,sbp\n低压,dbp\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["import-followups", str(data), "--kind", "hypertension", "--column-map",
                                      str(site_map), "--database-url", county.settings.database_url])
    assert result.exit_code == 0, result.output
    assert "site.csv:2: created: Encounter/" in result.stdout


def test_export_each_format(county, tmp_path):
    url = county.settings.database_url
    CliRunner().invoke(cli, ["import-followups", str(FILES / "diabetes.json"), "--kind", "diabetes",
                             "--database-url", url])
    common = ["export-followups", "--organization", "org-th-01", "--from", "2025-01-01", "--to", "2025-12-31",
              "--database-url", url]
    result = CliRunner().invoke(cli, [*common, "--format", "json", "--out", str(tmp_path / "out.json")])
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert [r["fasting_glucose"] for r in document["diabetes"]] == [3.8, 3.9]
    result = CliRunner().invoke(cli, [*common, "--format", "csv", "--out", str(tmp_path / "csv")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == [
        "diabetes.csv", "hospital_visits.csv", "hypertension.csv", "lab_results.csv"]
    result = CliRunner().invoke(cli, [*common, "--format", "xlsx", "--out", str(tmp_path / "out.xlsx")])
    assert result.exit_code == 0 and (tmp_path / "out.xlsx").read_bytes()[:2] == b"PK"
    bad = CliRunner().invoke(cli, [*common, "--format", "pdf", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2
