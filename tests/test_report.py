"""A memory a person can inspect: replay quality measured at learn time, shown by info, the model card and an
HTML page that a real headless browser renders with every image loaded."""

import json
import os
import shutil
import subprocess

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from genmem.artifact import SAMPLES_FILE
from genmem.cli.main import main
from genmem.learned_quality import SAMPLES, learned_quality
from genmem.memory import Memory

from tiny import tiny_set

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
IMAGE_CHECK = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  const out = document.createElement("div");
  out.id = "image-check";
  out.textContent = `loaded ${loaded} of ${images.length}`;
  document.body.appendChild(out);
});</script>"""


class FixedSolver(nn.Module):
    """Puts every image in output `choice`."""

    def __init__(self, outputs: int, choice: int):
        super().__init__()
        self.outputs, self.choice = outputs, choice

    def forward(self, images):
        return nn.functional.one_hot(torch.full((len(images),), self.choice), self.outputs).float()


def test_recognised_counts_the_solver_outputs_of_the_right_class(two_versions):
    generator, _ = Memory(two_versions).load("v0001")
    data = tiny_set(labels=(0, 1))
    index = data.labels.clone()
    # outputs 0 and 1 are earlier classes; the task's classes 0 and 1 are outputs 2 and 3
    quality = learned_quality(generator, 0, FixedSolver(4, 3), data.images, index, [7, 9], first_output=2)
    assert quality["7"]["recognised"] == 0.0 and quality["9"]["recognised"] == 100.0
    assert 0 < quality["7"]["diversity"] < 5
    copies = data.images[:1].repeat(len(index), 1, 1, 1)  # real images without spread: no ratio
    assert learned_quality(generator, 0, None, copies, index, [7, 9], 2)["7"] == {"recognised": None,
                                                                                 "diversity": None}
    assert SAMPLES >= 32


def test_info_and_model_card_show_quality_and_the_sample_strip(two_versions):
    manifest = Memory(two_versions).manifest()
    assert [sorted(task["quality"]) for task in manifest["tasks"]] == [["0", "1"], ["2"]]
    assert SAMPLES_FILE in manifest["files"]
    strip = two_versions / "versions" / "v0002" / SAMPLES_FILE
    assert strip.read_bytes().startswith(b"\x89PNG")
    card = (two_versions / "versions" / "v0002" / "MODEL_CARD.md").read_text()
    assert "| class | task | recognised (%) | diversity |" in card and f"({SAMPLES_FILE})" in card

    text = CliRunner().invoke(main, ["info", str(two_versions)]).output
    assert "Replay quality when learned" in text and str(strip) in text
    summary = json.loads(CliRunner().invoke(main, ["info", str(two_versions), "--json"]).output)
    assert [(row["label"], row["task"]) for row in summary["quality"]] == [(0, 0), (1, 0), (2, 1)]


@pytest.fixture(scope="module")
def report_page(two_versions, tmp_path_factory):
    page = tmp_path_factory.mktemp("report") / "report.html"
    result = CliRunner().invoke(main, ["report", str(two_versions), "-o", str(page)])
    assert result.exit_code == 0, result.output
    return page


def test_report_is_one_self_contained_page(report_page):
    html = report_page.read_text()
    sources = html.split('src="')[1:]
    assert len(sources) == 4, "every class, growth, and one grid per task"
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert "http://" not in html and "https://" not in html
    for name in ("Replay quality", "Growth and capacity", "Samples per task", "task 1 (v0002)"):
        assert name in html


def test_report_renders_every_image_in_headless_chromium(report_page, tmp_path):
    if BROWSER is None:
        if os.environ.get("GENMEM_REQUIRE_BROWSER"):
            pytest.fail("GENMEM_REQUIRE_BROWSER is set but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it")
    checked = tmp_path / "checked.html"
    checked.write_text(report_page.read_text().replace("</body>", IMAGE_CHECK + "</body>"))
    dom = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    assert '<div id="image-check">loaded 4 of 4</div>' in dom
