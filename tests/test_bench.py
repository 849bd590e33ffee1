"""`genmem bench sampling` end to end on a tiny memory, and BENCHMARKS.md sections replaced in place."""

import csv

from click.testing import CliRunner

from genmem.benchmarks.record import HEADER, record_section
from genmem.cli.main import main


def test_a_recorded_section_replaces_its_old_self_and_keeps_the_others(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    record_section(path, "Sampling throughput", "old numbers")
    record_section(path, "Protocol", "accuracy table")
    record_section(path, "Sampling throughput", "new numbers")
    assert path.read_text() == HEADER + "\n## Sampling throughput\n\nnew numbers\n\n## Protocol\n\naccuracy table\n"


def test_bench_sampling_measures_in_process_and_over_http_and_records(two_versions, tmp_path):
    record, rows_file = tmp_path / "BENCHMARKS.md", tmp_path / "BENCHMARKS.csv"
    result = CliRunner().invoke(main, ["bench", "sampling", str(two_versions), "--device", "cpu", "--precision", "auto",
                                       "--sizes", "1,8", "--seconds", "0.05", "--record", str(record),
                                       "--csv", str(rows_file)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| cpu | auto |")]
    assert len(rows) == 3, "two sizes, and the time split of the largest"
    assert all(float(cell.replace(",", "")) > 0 for cell in rows[0].strip("|").split("|")[3:])
    assert "A class's images the same in requests of every size: cpu auto: yes." in result.output
    text = record.read_text()
    for expected in ("## Sampling throughput", "- device: cpu: ", "- command: `genmem bench sampling ", "- commit: ",
                     "| cpu | auto | 8 |", "Targets: "):
        assert expected in text
    with rows_file.open() as file:
        table = list(csv.DictReader(file))
    assert [(row["method"], row["profile"]) for row in table] == [
        ("sampling-in-process", "1 auto"), ("sampling-http", "1 auto"),
        ("sampling-in-process", "8 auto"), ("sampling-http", "8 auto")]
    assert {(row["data"], row["tasks"], row["metric"], row["seeds"]) for row in table} == {
        ("tiny", "2", "images_per_s", "0")}, "tasks 2 and 1 classes: no NxM"
    assert all(float(row["value"]) > 0 and float(row["seconds"]) > 0 and row["hardware"] and row["commit"]
               and row["command"].startswith("genmem bench sampling ") for row in table)


def test_the_recorded_commit_is_the_running_genmems_wherever_the_command_starts(tmp_path, monkeypatch):
    from genmem.benchmarks.record import commit

    here = commit()
    monkeypatch.chdir(tmp_path)  # not a git checkout
    assert commit() == here
