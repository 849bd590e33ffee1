"""`genmem bench sampling` end to end on a tiny memory, and BENCHMARKS.md sections replaced in place."""

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
    record = tmp_path / "BENCHMARKS.md"
    result = CliRunner().invoke(main, ["bench", "sampling", str(two_versions), "--device", "cpu", "--sizes", "1,8",
                                       "--seconds", "0.05", "--record", str(record)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| cpu | float32 |")]
    assert len(rows) == 3, "two sizes, and the time split of the largest"
    assert all(float(cell.replace(",", "")) > 0 for cell in rows[0].strip("|").split("|")[3:])
    text = record.read_text()
    for expected in ("## Sampling throughput", "- device: cpu: ", "- command: `genmem bench sampling ", "- commit: ",
                     "| cpu | float32 | 8 |", "Targets: "):
        assert expected in text
