"""The benchmark scripts run end to end (tiny configs) on the current backend."""

import os
import subprocess
import sys
from pathlib import Path

import keras

ROOT = Path(__file__).resolve().parent.parent


def run_smoke(script: str) -> str:
    """Runs `benchmarks/<script> --smoke` for this backend; returns its stdout."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / script),
            "--smoke",
            f"--backends={keras.backend.backend()}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_inference_benchmark_runs_end_to_end():
    assert f"| keras_vit {keras.backend.backend()} |" in run_smoke("bench_inference.py")


def test_conversion_benchmark_runs_end_to_end():
    output = run_smoke("bench_conversion.py")
    ours = f"| keras_vit {keras.backend.backend()} |"
    row = next(line for line in output.splitlines() if line.startswith(ours))
    seconds, before, peak = (float(cell) for cell in row.split("|")[2:5])
    assert seconds >= 0 and peak >= before > 0
    assert "| transformers (torch) |" in output


def test_input_benchmark_runs_end_to_end():
    output = run_smoke("bench_input.py")
    row = next(
        line for line in output.splitlines() if line.startswith(f"| {keras.backend.backend()} |")
    )
    train, loader = (float(cell.strip(" x")) for cell in row.split("|")[2:4])
    assert train > 0 and loader > 0
