"""ViT forward-pass throughput of keras_vit on each Keras backend, side by side.

    python benchmarks/bench_inference.py [--variant ViTB16] [--batch-size 8] [--runs 5]

Each backend runs in its own worker process that builds the model with random
weights and compiles it (`predict_on_batch`: XLA on JAX and TensorFlow, eager
on torch). The parent then asks the workers for one timed batch in turn, so
drift on this shared machine hits every backend alike. Each figure is the
median of `--runs` batches after `--warmup` batches.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BACKENDS = ("jax", "tensorflow", "torch")


def worker(args: argparse.Namespace) -> None:
    """Builds the model, then answers each `run` line on stdin with one batch's time."""
    import numpy as np

    import keras_vit

    model = keras_vit.build_variant(args.variant, image_size=args.image_size)
    images = (
        np.random.default_rng(0)
        .standard_normal((args.batch_size, args.image_size, args.image_size, 3))
        .astype("float32")
    )
    for _ in range(args.warmup):
        model.predict_on_batch(images)
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        model.predict_on_batch(images)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


def start_worker(backend: str, argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, __file__, "--worker", *argv],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    if "ready" not in json.loads(process.stdout.readline() or '{"failed": 1}'):
        raise RuntimeError(f"the {backend} worker failed to start")
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="ViTB16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.variant, args.image_size, args.batch_size, args.runs, args.warmup = (
            "ViTTi16",
            32,
            2,
            2,
            1,
        )
    if args.worker:
        worker(args)
        return

    forwarded = [
        f"--variant={args.variant}",
        f"--image-size={args.image_size}",
        f"--batch-size={args.batch_size}",
        f"--warmup={args.warmup}",
    ]
    backends = args.backends.split(",")
    workers = {backend: start_worker(backend, forwarded) for backend in backends}
    times: dict[str, list[float]] = {backend: [] for backend in backends}
    for _ in range(args.runs):
        for backend, process in workers.items():
            process.stdin.write("run\n")
            process.stdin.flush()
            times[backend].append(json.loads(process.stdout.readline())["seconds"])
    for process in workers.values():
        process.stdin.close()
        process.wait()

    print(
        f"\n{args.variant} forward, batch {args.batch_size} at "
        f"{args.image_size}x{args.image_size}, fp32, median of {args.runs}\n"
    )
    print("| backend | ms / batch | img/s |")
    print("|---|---|---|")
    for backend, values in times.items():
        median = statistics.median(values)
        print(f"| keras_vit {backend} | {median * 1000:.0f} | {args.batch_size / median:.2f} |")


if __name__ == "__main__":
    main()
