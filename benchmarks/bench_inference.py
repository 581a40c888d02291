"""Forward-pass images/s: keras_vit on each backend vs transformers and keras-hub.

    python benchmarks/bench_inference.py [--runs 5] [--backends jax,tensorflow,torch]
        [--workloads ViTB16:1,ViTB16:8,ViTTi16:32,DINOv2S14:8,DeiTS16Distilled:8]
        [--kinds fp32,bf16] [--budget 30] [--keras-hub no] [--baseline REF]
    python benchmarks/bench_inference.py --smoke      # tiny sizes, to check the script

Workloads: ViT-B/16 at 224 with batch 1 and batch 8, ViT-Ti/16 at 224 with
batch 32, and the family's DINOv2-S/14 and DeiT-S/16 (distilled: two prefix
tokens) at 224 with batch 8; random weights and random images.

Implementations, each in its own process (`harness.Worker`):
- keras_vit on jax, tensorflow and torch through
  `keras_vit.compile_for_inference(model, precision)`: float32,
  `mixed_bfloat16` and bfloat16 weights (XLA on jax and tensorflow);
- transformers' base model of the workload's family (torch: `ViTModel`,
  `Dinov2Model`, `DeiTModel`), eager and sdpa attention, float32 and bf16
  weights (`.to(torch.bfloat16)`);
- keras-hub's `ViTBackbone` on each backend, float32, `mixed_bfloat16` and
  `bfloat16`, compiled with the same XLA choice, when keras-hub is installed.

The roofline is measured in the same run (`comparison.measure_matmul_rates`).
Rows it projects above `--budget` seconds per batch are skipped, and a row
whose second warm-up batch takes over 10 s is timed once. Every other figure is
the median of `--runs` batches after `--warmup`, timed in turns. The table goes
to stdout and to `benchmarks/results/inference.md`.

`--baseline REF` (a git ref: `HEAD~1`, a commit) checks a change for speed
regressions: it times this tree's keras_vit against REF's, checked out in a
temporary git worktree (`checkout.baseline_checkout`), on each backend and
nothing else. A `keras_vit@REF BACKEND` worker runs this script but imports
REF's keras_vit; its rows come in the same turns as `keras_vit BACKEND`'s,
and the ratio column is `vs baseline`: this tree's img/s over REF's for the
same backend, precision and workload. The tables go to
`benchmarks/results/inference_baseline.md`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402
from comparison import Benchmark, Row, command_line, run  # noqa: E402
from harness import Worker  # noqa: E402

KERAS_PRECISIONS = ("float32", "mixed_bfloat16", "bfloat16")


def keras_vit_step(variant: str, batch: int, precision: str, image_size: int):
    """A predict step of `keras_vit.compile_for_inference(model, precision)`."""
    import warnings

    import keras_vit

    model = workloads.keras_vit_model(variant, image_size, include_top=False)
    with warnings.catch_warnings():  # the emulated-bf16 warning; the table shows the cost
        warnings.simplefilter("ignore")
        model = keras_vit.compile_for_inference(model, precision=precision)
    images = workloads.random_images(batch, image_size)
    return lambda: model.predict_on_batch(images)


def keras_hub_step(variant: str, batch: int, precision: str, image_size: int):
    """A predict step of keras-hub's `ViTBackbone`, compiled with keras_vit's XLA choice."""
    from keras_vit.inference import default_jit_compile

    model = workloads.keras_hub_backbone(variant, image_size, precision)
    model.compile(jit_compile=default_jit_compile())
    images = workloads.random_images(batch, image_size)
    return lambda: model.predict_on_batch(images)


def transformers_step(variant: str, batch: int, precision: str, image_size: int, attention: str):
    """A forward step of transformers' base model of the variant's family (`ViTModel`,
    `DeiTModel`, `Dinov2Model`, ...) with bf16 or float32 weights.

    Like every other step it starts from the channels-last float32 numpy batch,
    so the move to an NCHW torch tensor of the weights' dtype is timed too.
    """
    import torch

    dtype = getattr(torch, precision)
    model = workloads.transformers_base_model(variant, image_size, attention).eval().to(dtype)
    images = workloads.random_images(batch, image_size)

    def step():
        with torch.inference_mode():
            pixels = torch.from_numpy(images).permute(0, 3, 1, 2).to(dtype)
            return model(pixel_values=pixels)

    return step


def build_step(library: str, case: str, image_size: int):
    """The step of `case`: `variant|batch|precision[|attention]`."""
    variant, batch, precision, *attention = case.split("|")
    step = {"keras_vit": keras_vit_step, "keras_hub": keras_hub_step}.get(library)
    if step:
        return step(variant, int(batch), precision, image_size)
    return transformers_step(variant, int(batch), precision, image_size, *attention)


def rows_for(variant: str, batch: int, workers: dict[str, Worker]) -> list[Row]:
    """The figures of one workload: every implementation at every precision."""
    rows = []
    for label, worker in workers.items():
        if label == "transformers":
            for precision in ("float32", "bfloat16"):
                for attention in ("eager", "sdpa"):
                    case = f"{variant}|{batch}|{precision}|{attention}"
                    rows.append(Row(f"transformers {attention}", precision, worker, case))
            continue
        for precision in KERAS_PRECISIONS:
            rows.append(Row(label, precision, worker, f"{variant}|{batch}|{precision}"))
    return rows


BENCHMARK = Benchmark(
    script=__file__,
    full=dict(
        image_size=224,
        workloads="ViTB16:1,ViTB16:8,ViTTi16:32,DINOv2S14:8,DeiTS16Distilled:8",
        matmul=workloads.MATMUL,
    ),
    smoke=workloads.SMOKE,
    build_step=build_step,
    rows_for=rows_for,
    image_gflop=workloads.vit_forward_gflops,
    results_file="inference.md",
    heading="Forward pass",
)

if __name__ == "__main__":
    run(BENCHMARK, command_line(__doc__.splitlines()[0]))
