import os
import subprocess
import sys
from pathlib import Path

import keras

ROOT = Path(__file__).resolve().parent.parent


def test_inference_benchmark_runs_end_to_end():
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_inference.py"),
            "--smoke",
            f"--backends={keras.backend.backend()}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"| keras_vit {keras.backend.backend()} |" in result.stdout
