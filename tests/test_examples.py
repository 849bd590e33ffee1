"""The class-incremental example runs end to end, over a server it starts and over the local memory alike."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "class_incremental.py"


@pytest.mark.parametrize("where", [[], ["--local"]], ids=["served", "local"])
def test_class_incremental_example_prints_a_t_for_every_version(two_versions, where):
    run = subprocess.run([sys.executable, str(EXAMPLE), "--memory", str(two_versions), "--data", "builtin",
                          "--steps", "2", "--batch-size", "8", *where], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert ("http://127.0.0.1:" in run.stdout) == (not where), "replay comes from the server unless --local"
    rows = re.findall(r"^\s+(\d+)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)$", run.stdout, re.M)
    assert [(task, classes) for task, classes, *_ in rows] == [("0", "0,1"), ("1", "2")]
    assert all(0 <= float(a) <= 100 for *_, with_replay, without in rows for a in (with_replay, without))
