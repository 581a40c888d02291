"""Data-parallel training steps/s on 1, 2, 4 and 8 devices, and training memory per device.

    python benchmarks/bench_distribution.py            # ViT-Ti/16 at 224, global batch 32
    python benchmarks/bench_distribution.py --smoke    # 2 layers, 32x32, batch 8, 1 and 8 devices

Each device count runs in its own JAX process with
`XLA_FLAGS=--xla_force_host_platform_device_count=N` and
`keras_vit.distribution.configure("data")`, and times the training step of
`bench_input.py` (the fine-tuning recipe's `train_on_batch`, which shards the
global batch across the devices as `fit` does). Virtual CPU devices share the
machine's cores, so on a CPU the table shows the overhead of splitting each
batch, not a speed-up.

The memory table comes from `keras_vit.distribution.training_memory`: weights,
gradients and AdamW's two moments per device, whole on every device with data
parallelism, Megatron-split with model parallelism on 8 devices.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from bench_input import FULL, SMOKE, train_images_per_second

DEVICE_COUNTS = (1, 2, 4, 8)
SMOKE_DEVICE_COUNTS = (1, 8)
MEMORY_VARIANTS = ("ViTB16", "ViTL16", "ViTH14")
MEMORY_DEVICES = 8
PARTS = ("weights", "total")


def run_devices(devices: int, smoke: bool) -> float:
    """Training steps/s, data parallel, in a fresh JAX process with `devices` CPU devices."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": flags, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, __file__, "--worker", *(["--smoke"] * smoke)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"training on {devices} devices failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])["steps_per_second"]


def memory_table() -> str:
    """Markdown: per-device training memory of ViT-B/16, L/16, H/14, replicated and split."""
    import keras_vit
    from keras_vit.distribution import model_parallel_sizes, training_memory

    lines = [
        "| Model | Parameters | Layout | fp32 weights | fp32 total | bf16 weights | bf16 total |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in MEMORY_VARIANTS:
        config = keras_vit.variant_config(variant, classes=1000)
        split = model_parallel_sizes(config, MEMORY_DEVICES)[-1]
        layouts = {
            "data parallel (whole model)": 1,
            f"model parallel, mesh ({MEMORY_DEVICES // split}, {split})": split,
        }
        for layout, model_parallel in layouts.items():
            memory = [training_memory(config, model_parallel, d) for d in ("float32", "bfloat16")]
            cells = [f"{bytes_[part] / 2**30:.2f} GiB" for bytes_ in memory for part in PARTS]
            lines.append(
                f"| {variant} | {config.count_params():,} | {layout} | {' | '.join(cells)} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, to check the script")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    if args.worker:
        import keras_vit

        keras_vit.distribution.configure("data")  # before bench_input builds the model
        steps = train_images_per_second(sizes) / sizes["batch_size"]
        print(json.dumps({"steps_per_second": steps}))
        return
    side, batch = sizes["image_size"], sizes["batch_size"]
    print(
        f"\nViT-Ti/16 ({sizes['layers']} layers), data parallel, global batch {batch} at "
        f"{side}x{side}, on {os.cpu_count()} CPU cores. The devices are virtual CPU devices "
        "sharing those cores: this measures the overhead of splitting each batch, not a "
        "speed-up.\n"
    )
    print("| devices | steps/s | images/s | vs 1 device |")
    print("|---|---|---|---|")
    baseline = None
    for devices in SMOKE_DEVICE_COUNTS if args.smoke else DEVICE_COUNTS:
        rate = run_devices(devices, args.smoke)
        baseline = baseline or rate
        print(
            f"| {devices} | {rate:.2f} | {rate * batch:.1f} | {rate / baseline:.2f}x |",
            flush=True,
        )
    print(
        f"\nTraining memory per device on {MEMORY_DEVICES} devices: weights, then weights + "
        "gradients + AdamW's 2 moments (bf16: all four in bfloat16). Activations, XLA "
        "buffers and the batch are not counted.\n"
    )
    print(memory_table())


if __name__ == "__main__":
    main()
