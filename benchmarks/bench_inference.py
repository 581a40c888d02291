"""Forward-pass images/s: keras_vit on each backend vs transformers and keras-hub.

    python benchmarks/bench_inference.py [--runs 5] [--backends jax,tensorflow,torch]
    python benchmarks/bench_inference.py --smoke      # tiny sizes, to check the script

Workloads: ViT-B/16 at 224 with batch 1 and batch 8, and ViT-Ti/16 at 224 with
batch 32, random weights and random images.

Implementations, each in its own process (`harness.Worker`):
- keras_vit on jax, tensorflow and torch: float32, `mixed_bfloat16`, and the
  bf16 inference mode `keras_vit.compile_for_inference(model, "bfloat16")`;
- transformers `ViTModel` (torch), eager and sdpa attention, float32 and bf16
  weights (`.to(torch.bfloat16)`);
- keras-hub's `ViTBackbone` on each backend (float32, `mixed_bfloat16`), when
  keras-hub is installed.

The roofline is measured in the same run: the transformers worker times a ViT-B
sized matmul (`workloads.MATMUL`) in float32 and bfloat16, and the model's
matmul FLOPs divided by that rate is the limit. Each figure is the median of
`--runs` batches after `--warmup`, timed in turns. The table goes to stdout and
to `benchmarks/results/inference.md`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402
from harness import Worker, alternate, error_cell, serve, start_peer_workers, write_results  # noqa: E402

FULL = dict(image_size=224, workloads=(("ViTB16", 1), ("ViTB16", 8), ("ViTTi16", 32)))
SMOKE = dict(image_size=32, workloads=(("ViTTi16", 2),))
KERAS_PRECISIONS = ("float32", "mixed_bfloat16", "bfloat16")


def keras_vit_step(variant: str, batch: int, precision: str, image_size: int):
    """A keras_vit predict step; `bfloat16` is `compile_for_inference`'s mode."""
    import keras_vit

    pure_bf16 = precision == "bfloat16"
    model = keras_vit.build_variant(
        variant, include_top=False, image_size=image_size, dtype=None if pure_bf16 else precision
    )
    if pure_bf16:
        model = keras_vit.compile_for_inference(model, precision="bfloat16")
    images = workloads.random_images(batch, image_size)
    return lambda: model.predict_on_batch(images)


def keras_hub_step(variant: str, batch: int, precision: str, image_size: int):
    """A predict step of keras-hub's `ViTBackbone`."""
    model = workloads.keras_hub_backbone(variant, image_size, precision)
    images = workloads.random_images(batch, image_size)
    return lambda: model.predict_on_batch(images)


def transformers_step(variant: str, batch: int, precision: str, image_size: int, attention: str):
    """A forward step of transformers' `ViTModel` with bf16 or float32 weights."""
    import torch
    import transformers

    dtype = getattr(torch, precision)
    config = workloads.transformers_config(variant, image_size, attention)
    model = transformers.ViTModel(config, add_pooling_layer=False).eval().to(dtype)
    images = workloads.random_images(batch, image_size)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).to(dtype)

    def step():
        with torch.inference_mode():
            return model(pixel_values=pixels)

    return step


def build_step(library: str, case: str, image_size: int):
    """The step of `case` (`variant|batch|precision[|attention]`, or `matmul|dtype`)."""
    fields = case.split("|")
    if fields[0] == "matmul":
        return workloads.matmul_step(fields[1])
    variant, batch, precision, *attention = fields
    step = {"keras_vit": keras_vit_step, "keras_hub": keras_hub_step}.get(library)
    if step:
        return step(variant, int(batch), precision, image_size)
    return transformers_step(variant, int(batch), precision, image_size, *attention)


def rows_for(variant: str, batch: int, workers: dict[str, Worker]) -> list[tuple]:
    """(implementation, precision class, precision, worker, case) per timed figure."""
    rows = []
    for label, worker in workers.items():
        if label == "transformers":
            for precision, kind in (("float32", "fp32"), ("bfloat16", "bf16")):
                for attention in ("eager", "sdpa"):
                    case = f"{variant}|{batch}|{precision}|{attention}"
                    rows.append((f"transformers {attention}", kind, precision, worker, case))
            continue
        precisions = KERAS_PRECISIONS if label.startswith("keras_vit") else KERAS_PRECISIONS[:2]
        for precision in precisions:
            kind = "fp32" if precision == "float32" else "bf16"
            rows.append((label, kind, precision, worker, f"{variant}|{batch}|{precision}"))
    return rows


def table(variant: str, batch: int, image_size: int, rows, medians, peaks) -> str:
    """A markdown table of one workload, with ratios to transformers and the roofline."""
    gflops = workloads.vit_forward_gflops(variant, image_size)
    speeds = [None if median is None else batch / median for median in medians]
    best = {}
    for (label, kind, *_), speed in zip(rows, speeds, strict=True):
        if label.startswith("transformers") and speed:
            best[kind] = max(best.get(kind, 0.0), speed)
    lines = [
        f"### {variant} at {image_size}x{image_size}, batch {batch}: {gflops:.1f} GFLOP/image, "
        f"roofline {peaks['fp32'] / gflops:.1f} img/s fp32 and {peaks['bf16'] / gflops:.1f} bf16",
        "",
        "| implementation | precision | ms / batch | img/s | vs best transformers | vs roofline |",
        "|---|---|---|---|---|---|",
    ]
    for (label, kind, precision, worker, case), median, speed in zip(
        rows, medians, speeds, strict=True
    ):
        if speed is None:
            lines.append(f"| {label} | {precision} | {error_cell(worker, case)} | | | |")
            continue
        ratio = f"{speed / best[kind]:.2f}x" if kind in best else "n/a"
        roofline = speed * gflops / peaks[kind]
        lines.append(
            f"| {label} | {precision} | {median * 1000:.0f} | {speed:.2f} | {ratio} "
            f"| {roofline:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = SMOKE if args.smoke else FULL
    image_size = settings["image_size"]
    runs, warmup = (2, 1) if args.smoke else (args.runs, args.warmup)
    if args.worker:
        serve(lambda case: build_step(args.worker, case, image_size), warmup)
        return
    forwarded = [f"--warmup={args.warmup}", *(["--smoke"] if args.smoke else [])]
    workers = start_peer_workers(__file__, args.backends.split(","), forwarded)
    transformers_worker = workers["transformers"]
    peak_pairs = [(transformers_worker, f"matmul|{dtype}") for dtype in ("float32", "bfloat16")]
    sections, peaks = [], {}
    for variant, batch in settings["workloads"]:
        rows = rows_for(variant, batch, workers)
        *medians, fp32, bf16 = alternate([(row[3], row[4]) for row in rows] + peak_pairs, runs)
        peaks = {"fp32": workloads.matmul_gflops() / fp32, "bf16": workloads.matmul_gflops() / bf16}
        sections.append(table(variant, batch, image_size, rows, medians, peaks))
        print(sections[-1] + "\n", flush=True)
    for worker in workers.values():
        worker.close()
    header = (
        f"# Forward pass (median of {runs} batches after {warmup} warm-up; last matmul peak "
        f"{peaks['fp32']:.0f} GFLOP/s fp32, {peaks['bf16']:.0f} GFLOP/s bf16)"
    )
    if not args.smoke:
        write_results("inference.md", header, sections)


if __name__ == "__main__":
    main()
