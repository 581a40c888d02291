"""Training-step images/s: keras_vit on each backend vs transformers and keras-hub.

    python benchmarks/bench_training.py [--runs 5] [--backends jax,tensorflow,torch]
        [--workloads ViTB16:8] [--kinds fp32,bf16] [--budget 30] [--keras-hub yes]
        [--baseline REF]
    python benchmarks/bench_training.py --smoke       # tiny sizes, to check the script

A step is the forward pass, the backward pass and an AdamW update of every
weight, for a 1000-class classifier on random images and labels.

Implementations, each in its own process (`harness.Worker`):
- keras_vit on jax, tensorflow and torch: `build_variant(..., classes=1000)`,
  `keras.optimizers.AdamW`, `train_on_batch`; float32 and `mixed_bfloat16`;
  XLA on jax and tensorflow, eager PyTorch on torch;
- transformers' image classifier of the variant's family (torch, sdpa) with
  `torch.optim.AdamW`: float32, and bf16 autocast for the mixed row;
- with `--keras-hub yes`, keras-hub's `ViTBackbone` with a [CLS] Dense head,
  compiled alike. It is off by default: seven ViT-B/16 training workers (AdamW
  state included) need more than this machine's 24 GB, and the kernel killed one.

A training step costs about 3x the forward FLOPs, and the roofline uses that.
Timing, budget, output and `--baseline` follow `bench_inference.py`; the table
goes to `benchmarks/results/training.md` (`training_baseline.md` with
`--baseline`). A baseline run starts two training workers per backend; where
memory is short, run one `--backends` at a time.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402
from comparison import Benchmark, Row, command_line, run  # noqa: E402
from harness import Worker  # noqa: E402

CLASSES = 1000
PRECISIONS = ("float32", "mixed_bfloat16")


def random_labels(batch: int):
    """Class ids, the same in every worker."""
    import numpy as np

    return np.random.default_rng(1).integers(0, CLASSES, batch)


def keras_train_step(model, batch: int, image_size: int):
    """Compiles a Keras classifier (logits out) with AdamW; returns a `train_on_batch` step."""
    import keras

    from keras_vit.inference import default_jit_compile

    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=default_jit_compile(),
    )
    images, labels = workloads.random_images(batch, image_size), random_labels(batch)
    return lambda: model.train_on_batch(images, labels)


def keras_vit_step(variant: str, batch: int, precision: str, image_size: int):
    """A keras_vit classifier's training step."""
    model = workloads.keras_vit_model(
        variant, image_size, classes=CLASSES, classifier_activation=None, dtype=precision
    )
    return keras_train_step(model, batch, image_size)


def keras_hub_step(variant: str, batch: int, precision: str, image_size: int):
    """keras-hub's `ViTBackbone` with a Dense head on the [CLS] token, trained alike."""
    import keras

    backbone = workloads.keras_hub_backbone(variant, image_size, precision)
    images = keras.Input((image_size, image_size, 3))
    logits = keras.layers.Dense(CLASSES, dtype=precision)(backbone(images)[:, 0])
    return keras_train_step(keras.Model(images, logits), batch, image_size)


def transformers_step(variant: str, batch: int, precision: str, image_size: int):
    """transformers' `ViTForImageClassification` with `torch.optim.AdamW`; bf16 autocast
    for `mixed_bfloat16`."""
    import torch
    import transformers

    config = workloads.transformers_config(variant, image_size, num_labels=CLASSES)
    model = transformers.AutoModelForImageClassification.from_config(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = workloads.random_images(batch, image_size)
    labels = random_labels(batch)
    mixed = precision == "mixed_bfloat16"

    def step():  # from the numpy batch, as the Keras steps are
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
            loss = model(pixel_values=pixels, labels=torch.from_numpy(labels)).loss
        loss.backward()
        optimizer.step()

    return step


def build_step(library: str, case: str, image_size: int):
    """The step of `case`: `variant|batch|precision`."""
    variant, batch, precision = case.split("|")
    step = {"keras_vit": keras_vit_step, "keras_hub": keras_hub_step}.get(
        library, transformers_step
    )
    return step(variant, int(batch), precision, image_size)


def rows_for(variant: str, batch: int, workers: dict[str, Worker]) -> list[Row]:
    """The figures of one workload: every implementation in float32 and mixed_bfloat16."""
    return [
        Row(label, precision, worker, f"{variant}|{batch}|{precision}")
        for label, worker in workers.items()
        for precision in PRECISIONS
    ]


def training_gflops(variant: str, image_size: int) -> float:
    """GFLOP of one image's training step: the forward pass and twice it backward."""
    return 3 * workloads.vit_forward_gflops(variant, image_size)


BENCHMARK = Benchmark(
    script=__file__,
    full=dict(image_size=224, workloads="ViTB16:8", matmul=workloads.MATMUL),
    smoke=workloads.SMOKE,
    build_step=build_step,
    rows_for=rows_for,
    image_gflop=training_gflops,
    results_file="training.md",
    heading="Training step",
    keras_hub_by_default=False,  # seven B/16 training workers need more than 24 GB
)

if __name__ == "__main__":
    run(BENCHMARK, command_line(__doc__.splitlines()[0]))
