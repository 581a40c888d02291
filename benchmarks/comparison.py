"""Rows, roofline and the markdown table shared by the speed benchmarks.

A `Row` is one timed figure: an implementation at a precision, run by a worker.
The roofline is the best rate any backend reaches on a ViT-B sized matmul in
the same run (`measure_matmul_rates`); a model's matmul FLOPs divided by that
rate is the fastest it could go. Rows the roofline says would take longer than
a budget per batch (bf16 on a CPU without native bf16) are skipped with the
projection shown instead of a figure.

With `--baseline REF` only keras_vit runs, this tree's against REF's
(`checkout.baseline_checkout`), and the ratio column compares each row with
the baseline's row of the same backend, precision and workload.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import workloads
from checkout import baseline_checkout, this_tree
from harness import (
    SINGLE_RUN_SECONDS,
    Worker,
    alternate,
    cpu_line,
    error_cell,
    serve,
    start_peer_workers,
    write_results,
)


@dataclass
class Row:
    """One figure of a table: `label` at `precision`, timed as `case` by `worker`."""

    label: str
    precision: str
    worker: Worker
    case: str

    @property
    def kind(self) -> str:
        """The precision class the ratios compare within: `fp32` or `bf16`."""
        return "fp32" if self.precision == "float32" else "bf16"


def measure_matmul_rates(
    workers: list[Worker], shape: tuple[int, int, int], runs: int
) -> dict[tuple[str, str], float]:
    """GFLOP/s of a `shape` matmul per (backend, precision class), one worker per backend.

    Returns:
        `{(backend, "fp32" | "bf16"): GFLOP/s}`.
    """
    probes = {worker.backend: worker for worker in workers}
    pairs = [
        (worker, f"matmul|{dtype}")
        for worker in probes.values()
        for dtype in ("float32", "bfloat16")
    ]
    medians = alternate(pairs, runs)
    return {
        (worker.backend, "fp32" if case.endswith("float32") else "bf16"): (
            workloads.matmul_gflops(shape) / median
        )
        for (worker, case), median in zip(pairs, medians, strict=True)
        if median
    }


def skip_beyond_budget(
    rows: list[Row], batch_gflop: float, rates: dict[tuple[str, str], float], budget: float
) -> None:
    """Skips rows whose roofline projection exceeds `budget` seconds per batch."""
    for row in rows:
        rate = rates.get((row.worker.backend, row.kind))
        if rate and batch_gflop / rate > budget:
            row.worker.skip(
                row.case,
                f"projected {batch_gflop / rate:.0f} s/batch "
                f"({row.worker.backend} {row.kind} matmuls run at {rate:.1f} GFLOP/s here)",
            )


def reference_speeds(rows: list[Row], speeds: list[float | None]) -> tuple[str, list]:
    """The ratio column: its heading, and the img/s each row is divided by.

    With baseline workers in `rows`, a row's reference is the baseline row of the same
    backend and case (a baseline row is its own); otherwise the best transformers figure
    of the row's precision class.

    Returns:
        `(heading, references)`, one reference per row; None where there is none.
    """
    if any(row.worker.baseline for row in rows):
        baseline = {
            (row.worker.backend, row.case): speed
            for row, speed in zip(rows, speeds, strict=True)
            if row.worker.baseline
        }
        return "vs baseline", [baseline.get((row.worker.backend, row.case)) for row in rows]
    best: dict[str, float] = {}
    for row, speed in zip(rows, speeds, strict=True):
        if row.label.startswith("transformers") and speed:
            best[row.kind] = max(best.get(row.kind, 0.0), speed)
    return "vs best transformers", [best.get(row.kind) for row in rows]


def table(
    title: str,
    rows: list[Row],
    medians: list[float | None],
    batch: int,
    image_gflop: float,
    rates: dict[tuple[str, str], float],
) -> str:
    """A markdown table: ms per batch, img/s, a ratio (`reference_speeds`: to the best
    transformers figure of the same precision class, or to the baseline's row), and the
    share of the roofline.

    Args:
        title: the heading line.
        rows: the figures, in table order.
        medians: seconds per batch, one per row; None where a row failed or was skipped.
        batch: images per batch.
        image_gflop: the matmul GFLOP of one image's step.
        rates: `measure_matmul_rates`' result; the roofline uses the best backend's rate.
    """
    peak = {kind: max(v for (_, k), v in rates.items() if k == kind) for kind in ("fp32", "bf16")}
    speeds = [None if median is None else batch / median for median in medians]
    versus, references = reference_speeds(rows, speeds)
    lines = [
        f"{title}: {image_gflop:.1f} GFLOP/image, roofline {peak['fp32'] / image_gflop:.2f} img/s "
        f"fp32 and {peak['bf16'] / image_gflop:.2f} bf16",
        "",
        f"| implementation | precision | ms / batch | img/s | {versus} | vs roofline |",
        "|---|---|---|---|---|---|",
    ]
    for row, median, speed, reference in zip(rows, medians, speeds, references, strict=True):
        if speed is None:
            lines.append(
                f"| {row.label} | {row.precision} | {error_cell(row.worker, row.case)} | | | |"
            )
            continue
        ratio = f"{speed / reference:.2f}x" if reference else "n/a"
        once = " (1 run)" if row.case in row.worker.single_run else ""
        lines.append(
            f"| {row.label} | {row.precision} | {median * 1000:.0f}{once} | {speed:.2f} | {ratio} "
            f"| {speed * image_gflop / peak[row.kind]:.0%} |"
        )
    return "\n".join(lines)


def rates_line(rates: dict[tuple[str, str], float]) -> str:
    """The measured matmul rates, one phrase per backend and precision class."""
    return ", ".join(
        f"{backend} {kind} {rate:.1f}" for (backend, kind), rate in sorted(rates.items())
    )


@dataclass
class Benchmark:
    """What a speed comparison times; `run` does the rest.

    Attributes:
        script: the benchmark's file, started again as each worker.
        full: `image_size`, `workloads` ("VARIANT:BATCH,...") and `matmul` shape.
        smoke: the same, tiny, for `--smoke`.
        build_step: `(library, case, image_size)` -> a zero-argument step.
        rows_for: `(variant, batch, workers)` -> the rows of one workload.
        image_gflop: `(variant, image_size)` -> matmul GFLOP of one image's step.
        results_file: the file under `benchmarks/results/`.
        heading: what is timed, for the titles ("Forward pass").
        keras_hub_by_default: whether keras-hub runs without `--keras-hub`.
    """

    script: str
    full: dict
    smoke: dict
    build_step: Callable[[str, str, int], Callable[[], object]]
    rows_for: Callable[[str, int, dict[str, Worker]], list[Row]]
    image_gflop: Callable[[str, int], float]
    results_file: str
    heading: str
    keras_hub_by_default: bool = True


def command_line(description: str) -> argparse.Namespace:
    """The options every speed comparison takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=5, help="timed batches per figure")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--workloads", help="VARIANT:BATCH,... (default: the full set)")
    parser.add_argument("--kinds", default="fp32,bf16", help="precision classes to time")
    parser.add_argument("--budget", type=float, default=30.0, help="max projected s/batch")
    parser.add_argument(
        "--keras-hub", choices=("yes", "no"), help="time keras-hub too (default: per script)"
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="time keras_vit against the keras_vit of git REF (e.g. HEAD~1), and nothing else",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--single-run-seconds", type=float, help=argparse.SUPPRESS)
    return parser.parse_args()


def run(benchmark: Benchmark, args: argparse.Namespace) -> None:
    """Runs a worker (`--worker`) or the whole comparison: starts the workers,
    measures the matmul rates, times every workload's rows in turns (one
    precision class at a time), prints the tables and writes them to
    `benchmarks/results/` (not for `--smoke`).

    With `--baseline REF` the workers are keras_vit's on each backend, each twinned
    with one importing REF's keras_vit from a temporary worktree, and the tables go to
    `<results_file stem>_baseline.md`.
    """
    settings = benchmark.smoke if args.smoke else benchmark.full
    image_size, matmul = settings["image_size"], settings["matmul"]
    runs, warmup = (2, 1) if args.smoke else (args.runs, args.warmup)
    if args.worker:

        def build(case: str) -> Callable[[], object]:
            if case.startswith("matmul|"):
                return workloads.matmul_step(
                    case.split("|")[1], os.environ["KERAS_BACKEND"], matmul
                )
            return benchmark.build_step(args.worker, case, image_size)

        serve(build, warmup, args.single_run_seconds or SINGLE_RUN_SECONDS)
        return
    checkout = baseline_checkout(args.baseline) if args.baseline else nullcontext()
    with checkout as baseline:  # a baseline run times keras_vit against REF's, and only that
        forwarded = [f"--warmup={warmup}", *(["--smoke"] if args.smoke else [])]
        if baseline:  # ratios need every run timed, however long a step is
            forwarded.append("--single-run-seconds=inf")
        keras_hub = (
            benchmark.keras_hub_by_default if args.keras_hub is None else args.keras_hub == "yes"
        )
        backends = args.backends.split(",")
        workers = start_peer_workers(benchmark.script, backends, forwarded, keras_hub, baseline)
        rates = measure_matmul_rates(list(workers.values()), matmul, runs)
        print(f"matmul GFLOP/s: {rates_line(rates)}\n", flush=True)
        sections = []
        for workload in (args.workloads or settings["workloads"]).split(","):
            variant, batch = workload.split(":")
            gflop = benchmark.image_gflop(variant, image_size)
            rows = [
                row
                for row in benchmark.rows_for(variant, int(batch), workers)
                if row.kind in args.kinds
            ]
            skip_beyond_budget(rows, gflop * int(batch), rates, args.budget)
            timed = {}  # one precision class at a time, so that workers hold one model each
            for kind in ("fp32", "bf16"):
                pairs = [(row.worker, row.case) for row in rows if row.kind == kind]
                timed.update(zip(pairs, alternate(pairs, runs), strict=True))
            medians = [timed[row.worker, row.case] for row in rows]
            title = (
                f"### {benchmark.heading}, {variant} at {image_size}x{image_size}, batch {batch}"
            )
            sections.append(table(title, rows, medians, int(batch), gflop, rates))
            print(sections[-1] + "\n", flush=True)
        for worker in workers.values():
            worker.close()
    header = (
        f"# {benchmark.heading} (median of {runs} batches after {warmup} warm-up)\n\n"
        f"{cpu_line()}\n\n"
        f"Matmul GFLOP/s measured in this run: {rates_line(rates)}."
    )
    results_file = benchmark.results_file
    if baseline:
        header += (
            f"\n\n`keras_vit@{baseline.ref}` is commit {baseline.commit}; `keras_vit` is the "
            f"working tree, at {this_tree()}."
        )
        results_file = Path(results_file).stem + "_baseline.md"
    if not args.smoke:
        write_results(results_file, header, sections)
