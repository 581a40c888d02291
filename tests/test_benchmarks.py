"""The benchmark scripts run end to end (tiny configs) on the current backend."""

import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from tests.test_distribution import JAX_CACHE, in_the_jax_pass_only

ROOT = Path(__file__).resolve().parent.parent


def run_smoke(script: str, *args: str, per_backend: bool = True, **env: str) -> str:
    """Runs `benchmarks/<script> --smoke *args` (for this backend, if `per_backend`) with
    `env` added to the environment; returns its stdout."""
    backends = [f"--backends={keras.backend.backend()}"] if per_backend else []
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", *args, *backends],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def timed_rows(output: str, label: str) -> dict[str, float]:
    """{precision: img/s} of `label`'s rows in a speed comparison's table."""
    rows = [line.split("|")[1:6] for line in output.splitlines() if line.startswith(f"| {label} |")]
    return {precision.strip(): float(speed) for _, precision, _, speed, _ in rows}


@pytest.mark.parametrize(
    ("script", "precisions"),
    [
        ("bench_inference.py", {"float32", "mixed_bfloat16", "bfloat16"}),
        ("bench_training.py", {"float32", "mixed_bfloat16"}),
    ],
)
def test_speed_comparison_runs_end_to_end(script, precisions):
    output = run_smoke(script)
    ours = timed_rows(output, f"keras_vit {keras.backend.backend()}")
    assert set(ours) == precisions and all(speed > 0 for speed in ours.values())
    assert "| transformers" in output and "matmul GFLOP/s:" in output


def worktrees() -> list[str]:
    """The paths of this repository's git worktrees."""
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list", "--porcelain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split(" ", 1)[1] for line in listing.splitlines() if line.startswith("worktree ")]


def test_baseline_run_times_this_tree_against_a_checkout_of_another_commit():
    output = run_smoke("bench_inference.py", "--baseline=HEAD", "--kinds=fp32")
    backend = keras.backend.backend()
    ours, theirs = f"keras_vit {backend}", f"keras_vit@HEAD {backend}"
    assert (
        "| implementation | precision | ms / batch | img/s | vs baseline | vs roofline |" in output
    )
    assert "| transformers" not in output and "| keras-hub" not in output
    rows = [line.split("|")[1:-1] for line in output.splitlines() if line.startswith("| keras")]
    cells = {row[0].strip(): [cell.strip() for cell in row] for row in rows}
    assert set(cells) == {ours, theirs} and all(row[1] == "float32" for row in cells.values())
    speed, base = float(cells[ours][3]), float(cells[theirs][3])
    assert speed > 0 and base > 0
    assert float(cells[ours][4].rstrip("x")) == pytest.approx(speed / base, abs=0.011)
    assert cells[theirs][4] == "1.00x"
    # The baseline worker imports the checkout's keras_vit and conversion, not this tree's.
    line = next(line for line in output.splitlines() if line.startswith("baseline HEAD ("))
    checkout = Path(line.split("keras_vit from ")[1].split("/keras_vit/__init__.py")[0])
    assert not checkout.is_relative_to(ROOT) and f"{checkout}/keras_vit/conversion/" in line
    assert not checkout.exists() and str(checkout) not in worktrees()  # removed at the end


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


@in_the_jax_pass_only
def test_distribution_benchmark_runs_end_to_end():
    output = run_smoke(
        "bench_distribution.py", per_backend=False, JAX_COMPILATION_CACHE_DIR=str(JAX_CACHE)
    )
    assert "overhead of splitting each batch, not a speed-up" in output
    rows = [line.split("|")[1:4] for line in output.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [int(devices) for devices, _, _ in rows] == [1, 8]
    assert all(float(steps) > 0 and float(images) > 0 for _, steps, images in rows)
    h14 = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in output.splitlines()
        if line.startswith("| ViTH14 |")
    ]
    assert [row[2] for row in h14] == ["data parallel (whole model)", "model parallel, mesh (1, 8)"]
    whole, split = (float(row[4].split()[0]) for row in h14)  # fp32 totals, in GiB
    assert whole > split > whole / 8  # the block kernels shrink 8x, the rest stays whole


def test_learning_with_less_runs_a_row_and_reuses_it(tmp_path):
    arguments = ("--rows", "A", f"--work={tmp_path}")
    output = run_smoke("learning_with_less.py", *arguments, per_backend=False)
    row = next(line for line in output.splitlines() if line.startswith("| A |"))
    accuracy = float(row.split("|")[3])
    assert 0.0 <= accuracy <= 1.0 and "--label-fraction 0.1" in output
    assert (tmp_path / "A" / "model" / "config.json").is_file()
    again = run_smoke("learning_with_less.py", *arguments, per_backend=False)
    assert f"from {tmp_path / 'A.json'}" in again and row in again
