"""Is the input pipeline faster than training? Loader vs train-step images/s, per backend.

    python benchmarks/bench_input.py [--backends jax,tensorflow,torch] [--workers 2]
    python benchmarks/bench_input.py --smoke     # tiny sizes, to check the script

An image folder of random 320x256 JPEGs is written once into a temporary
directory and read with `keras_vit.data` exactly as `examples/finetune.py` reads
data: `datasets` imagefolder, JPEG decoding, random resized crop and flip, then
`ImageProcessor` to 224x224. The loader is timed over whole batches with 1
thread and with `--workers` threads (as `fit` runs a PyDataset). Each backend
then times ViT-Ti/16 training steps (`train_on_batch`, the fine-tuning recipe,
batch 32 at 224) in its own process. The loader must out-run every backend's
training step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

BACKENDS = ("jax", "tensorflow", "torch")
FULL = dict(images=384, image_size=224, batch_size=32, steps=5, layers=12)
SMOKE = dict(images=48, image_size=32, batch_size=8, steps=2, layers=2)  # compiles quickly


def write_jpeg_folder(directory: Path, images: int) -> None:
    """`images` random smooth 320x256 JPEGs in 4 class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(images):
        folder = directory / f"class_{index % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((320, 256), Image.BILINEAR).save(folder / f"{index}.jpg")


def loader_images_per_second(directory: Path, sizes: dict, workers: int) -> float:
    """Images/s of the training loader over one epoch, with `workers` threads."""
    from keras_vit import ImageProcessor
    from keras_vit.data import Augmentation, ImageBatches, load_image_classification

    data = load_image_classification(data_dir=directory, validation_fraction=0.125)
    batches = ImageBatches(
        data.train,
        data.image_column,
        data.label_column,
        ImageProcessor(sizes["image_size"]),
        batch_size=sizes["batch_size"],
        shuffle=True,
        augmentation=Augmentation(),
    )
    batches[0]  # warm up: open the files once
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        count = sum(len(labels) for _, labels in pool.map(batches.__getitem__, range(len(batches))))
    return count / (time.perf_counter() - start)


def train_images_per_second(sizes: dict) -> float:
    """Images/s of ViT-Ti/16 training steps with the recipe, on this process's backend."""
    import keras_vit
    from keras_vit.training import compile_for_finetuning

    batch, size = sizes["batch_size"], sizes["image_size"]
    model = keras_vit.ViTTi16(
        image_size=size, classes=10, classifier_activation=None, num_hidden_layers=sizes["layers"]
    )
    compile_for_finetuning(model, total_steps=100)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, 10, batch)
    for _ in range(2):  # compile; under a one-device distribution the second step compiles again
        model.train_on_batch(images, labels)
    times = []
    for _ in range(sizes["steps"]):
        start = time.perf_counter()
        model.train_on_batch(images, labels)
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


def run_backend(backend: str, smoke: bool) -> float:
    """Runs `train_images_per_second` in a fresh process for `backend`."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, __file__, "--train-worker", *(["--smoke"] * smoke)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"training on {backend} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--train-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    if args.train_worker:
        print(json.dumps({"images_per_second": train_images_per_second(sizes)}))
        return
    with tempfile.TemporaryDirectory() as workdir:
        write_jpeg_folder(Path(workdir), sizes["images"])
        loader = {n: loader_images_per_second(Path(workdir), sizes, n) for n in (1, args.workers)}
    print(
        f"\nViT-Ti/16, batch {sizes['batch_size']} at {sizes['image_size']}x{sizes['image_size']}"
        f"; loader on 320x256 JPEGs with crop + flip: {loader[1]:.0f} img/s with 1 thread, "
        f"{loader[args.workers]:.0f} img/s with {args.workers}\n"
    )
    print("| backend | train step img/s | loader img/s (1 thread) | loader / train | ok? |")
    print("|---|---|---|---|---|")
    for backend in args.backends.split(","):
        train = run_backend(backend, args.smoke)
        ratio = loader[1] / train
        print(
            f"| {backend} | {train:.1f} | {loader[1]:.0f} | {ratio:.1f}x "
            f"| {'yes' if ratio > 1 else 'no'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
