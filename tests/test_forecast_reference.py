"""benchmarks/forecast_reference.py refuses what it cannot measure before it draws or writes anything."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "forecast_reference.py"
RESULT = ROOT / "benchmarks" / "results" / "forecast_reference.json"


@pytest.mark.parametrize("args, says", [
    (["--worlds", "small,smal"], "unknown world(s) smal: use some of small, grain"),
    (["--replicas", "0"], "--replicas must be at least 1"),
])
def test_a_bad_argument_is_named_and_nothing_is_written(args, says):
    before = RESULT.stat().st_mtime_ns if RESULT.exists() else None
    run = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=SCRIPT.parent, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert says in run.stderr
    assert (RESULT.stat().st_mtime_ns if RESULT.exists() else None) == before
