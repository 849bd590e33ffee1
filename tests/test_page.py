"""BENCHMARKS.csv holds the figures; the results page's tables are generated from it and never disagree."""

from pathlib import Path

from click.testing import CliRunner

from genmem.benchmarks.footprint import points_of_rows
from genmem.benchmarks.page import privacy_series, refresh_page
from genmem.benchmarks.record import COLUMNS, read_rows, record_rows
from genmem.benchmarks.rows import csv_name
from genmem.cli.main import main

REPO = Path(__file__).resolve().parent.parent


def row(seed: int, value: float, **changes) -> dict:
    base = {"data": "mnist", "tasks": "10x1", "method": "dgmw-replay", "profile": "quick", "metric": "A10",
            "value": value, "joint": 98.5, "seconds": 600.0, "hardware": "2 cores", "commit": "abc", "seeds": seed,
            "command": "genmem bench protocol"}
    return base | changes


def plots_written(tmp_path: Path, rows: list[dict]) -> set[str]:
    """The PNGs `genmem bench page` writes from these rows."""
    table, page = tmp_path / "BENCHMARKS.csv", tmp_path / "BENCHMARKS.md"
    record_rows(table, rows)
    page.write_text("<!-- table: accuracy -->\n<!-- end table -->\n")
    written = CliRunner().invoke(main, ["bench", "page", "--csv", str(table), "--page", str(page), "--plots",
                                        str(tmp_path / "plots")])
    assert written.exit_code == 0, written.output
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert all(png.read_bytes().startswith(b"\x89PNG") for png in pngs)
    return {png.name for png in pngs}


def test_a_rerun_replaces_its_row_and_keeps_the_others(tmp_path):
    table = tmp_path / "BENCHMARKS.csv"
    record_rows(table, [row(0, 97.0), row(1, 98.0)])
    record_rows(table, [row(0, 97.5), row(0, 40.0, data="cifar10")])
    rows = read_rows(table)
    assert list(rows[0]) == list(COLUMNS)
    assert [(r["data"], r["seeds"], r["value"]) for r in rows] == [("mnist", "1", "98"), ("mnist", "0", "97.5"),
                                                                    ("cifar10", "0", "40")]


def test_the_page_shows_a_figure_over_its_seeds_and_one_seed_as_such(tmp_path):
    table, page = tmp_path / "BENCHMARKS.csv", tmp_path / "BENCHMARKS.md"
    record_rows(table, [row(0, 97.0), row(1, 98.0), row(2, 99.0), row(0, 40.0, data="cifar10", joint="")])
    page.write_text("# Results\n\nprose stays\n\n<!-- table: accuracy -->\nold\n<!-- end table -->\n\nmore prose\n")
    text = refresh_page(page, table)
    assert text.startswith("# Results\n\nprose stays\n\n<!-- table: accuracy -->\n| data |")
    assert text.endswith("<!-- end table -->\n\nmore prose\n") and "old" not in text
    assert "| mnist | 10x1 | dgmw-replay | quick | 98.00 (97.00 to 99.00, 3 seeds) | 98.50 (98.50 to 98.50, 3 seeds) " \
           "| 96.46 |" in text
    assert "| cifar10 | 10x1 | dgmw-replay | quick | 40.00 (one seed) | – | 51.70 |" in text


def test_a_figure_names_every_machine_its_seeds_ran_on_once(tmp_path):
    table, page = tmp_path / "BENCHMARKS.csv", tmp_path / "BENCHMARKS.md"
    record_rows(table, [row(0, 97.0, hardware="Xeon, 2 cores"), row(1, 98.0, hardware="EPYC, 2 cores"),
                        row(2, 99.0, hardware="Xeon, 2 cores")])
    page.write_text("<!-- table: accuracy -->\n<!-- end table -->\n")
    assert "| 96.46 | 10.0 | Xeon, 2 cores; EPYC, 2 cores |" in refresh_page(page, table)


def test_the_bytes_table_shows_each_memorys_payload_and_no_accuracy_table_does(tmp_path):
    table, page = tmp_path / "BENCHMARKS.csv", tmp_path / "BENCHMARKS.md"
    record_rows(table, [row(0, 97.0), row(0, 2325788, method="dgmw", metric="payload_bytes", joint="")])
    page.write_text("<!-- table: accuracy -->\n<!-- end table -->\n<!-- table: bytes -->\n<!-- end table -->\n")
    text = refresh_page(page, table)
    accuracy, kept = text.split("<!-- table: bytes -->")
    assert "2,325,788" not in accuracy and "| mnist | 10x1 | dgmw | quick | 2,325,788 (one seed) |" in kept


def test_the_command_checks_and_writes_the_page(tmp_path):
    table, page = tmp_path / "BENCHMARKS.csv", tmp_path / "BENCHMARKS.md"
    record_rows(table, [row(0, 97.0)])
    page.write_text("<!-- table: accuracy -->\n<!-- end table -->\n")
    runner = CliRunner()
    stale = runner.invoke(main, ["bench", "page", "--csv", str(table), "--page", str(page), "--check"])
    assert stale.exit_code == 1 and "differ" in stale.output
    assert runner.invoke(main, ["bench", "page", "--csv", str(table), "--page", str(page)]).exit_code == 0
    assert runner.invoke(main, ["bench", "page", "--csv", str(table), "--page", str(page), "--check"]).exit_code == 0


def test_the_results_page_of_this_repository_matches_its_csv():
    assert refresh_page(REPO / "BENCHMARKS.md", REPO / "BENCHMARKS.csv") == (REPO / "BENCHMARKS.md").read_text()


def test_a_buffer_sized_by_another_memory_keeps_its_own_row_and_sits_at_that_memorys_bytes():
    dgma, dgmw = {"variant": "dgma", "arch": "dcgan", "method_options": {}}, {"variant": "dgmw", "arch": "dcgan"}
    assert [csv_name(m, dgma) for m in ("buffer", "buffer-x2", "joint")] == ["dgma-buffer", "dgma-buffer-x2", "joint"]
    assert csv_name("buffer", dgmw) == "buffer"
    assert csv_name("buffer", dgma | {"method_options": {"buffer_bytes": 5000}}) == "buffer", "bytes given: no memory's"
    rows = [row(0, 1000, method="dgmw", metric="payload_bytes"), row(0, 700, method="dgma", metric="payload_bytes"),
            row(0, 96.0, method="buffer"), row(0, 95.0, method="dgma-buffer-x2"), row(0, 97.0, method="dgma-replay")]
    rows = [{key: str(value) for key, value in r.items()} for r in rows]
    points = {p.method: (p.kind, p.bytes) for p in points_of_rows(rows, "mnist", "10x1", "quick")}
    assert points == {"buffer": ("buffer", 1000), "dgma-buffer-x2": ("buffer", 1400),
                      "dgma-replay (quick)": ("genmem", 700)}


def test_the_bytes_plot_puts_each_storage_types_replay_at_its_payload_and_buffers_at_their_budgets(tmp_path):
    float32 = "quick, float32 storage"
    rows = [row(0, 1000, method="dgmw", metric="payload_bytes"), row(1, 1200, method="dgmw", metric="payload_bytes"),
            row(0, 97.0), row(1, 98.0), row(0, 96.0, method="buffer"), row(0, 95.0, method="buffer-x0.5"),
            row(0, 2200, method="dgmw", metric="payload_bytes", profile=float32),
            row(0, 97.5, profile=float32), row(0, 98.5, method="buffer-x2", profile=float32),
            row(0, 99.0, method="buffer", profile="quick, 10 classifier passes"),
            row(0, 9000, method="sampling-in-process", metric="images_per_s")]
    rows = [{key: str(value) for key, value in r.items()} for r in rows]
    points = {p.method: (p.kind, p.bytes, p.accuracy) for p in points_of_rows(rows, "mnist", "10x1", "quick")}
    assert points == {"dgmw-replay (quick)": ("genmem", 1100, 97.5), "buffer": ("buffer", 1100, 96.0),
                      "buffer-x0.5": ("buffer", 550, 95.0), f"dgmw-replay ({float32})": ("genmem", 2200, 97.5),
                      "buffer-x2": ("buffer", 4400, 98.5)}, "means over seeds; another budget's buffer is apart"
    assert plots_written(tmp_path, rows) == {"bytes-mnist-10x1.png"}


def test_the_dp_plot_has_one_line_per_profile_with_every_seed_of_each_epsilon(tmp_path):
    dp = "genmem bench privacy --epsilons {} --delta 1e-05 --seeds 1"
    rows = [row(0, 93.6, method="dgmw-replay-dp-eps10", profile="dp", command=dp.format(10)),
            row(0, 78.2, method="dgmw-replay-dp-eps1", profile="dp", command=dp.format(1)),
            row(1, 94.0, method="dgmw-replay-dp-eps10", profile="dp", command=dp.format(10) + " --first-seed 1"),
            row(0, 91.5, method="dgmw-replay-dp-eps4", profile="dp, bfloat16", command=dp.format(4)),
            row(0, 97.0)]
    rows = [{key: str(value) for key, value in r.items()} for r in rows]
    series, delta = privacy_series(rows)
    assert series == {"genmem DGMw (dp)": [(10.0, [93.6, 94.0]), (1.0, [78.2])],
                      "genmem DGMw (dp, bfloat16)": [(4.0, [91.5])]}
    assert delta == 1e-5
    rows[0]["command"] = "genmem bench privacy --epsilons 10 --delta 1e-06"
    assert privacy_series(rows)[1] is None, "commands naming different deltas: the plot names none"
    assert privacy_series([r for r in rows if "-dp-" not in r["method"]]) == ({}, None)
    assert plots_written(tmp_path, rows) == {"dp-accuracy-against-epsilon.png"}


def test_the_privacy_table_keeps_two_profiles_of_one_epsilon_apart(tmp_path):
    table, page = tmp_path / "BENCHMARKS.csv", tmp_path / "BENCHMARKS.md"
    record_rows(table, [row(0, 78.2, method="dgmw-replay-dp-eps1", profile="dp", seconds=""),
                        row(0, 81.6, method="dgmw-replay-dp-eps1", profile="dp, wasserstein critic", seconds="")])
    page.write_text("<!-- table: privacy -->\n<!-- end table -->\n")
    text = refresh_page(page, table)
    assert "| mnist | 10x1 | dgmw-replay-dp-eps1 | dp | 78.20 (one seed) | – |" in text
    assert "| mnist | 10x1 | dgmw-replay-dp-eps1 | dp, wasserstein critic | 81.60 (one seed) | – |" in text
