"""Time and peak memory of loading a transformers ViT-L/16 checkpoint, per Keras backend.

    python benchmarks/bench_conversion.py [--backends jax,tensorflow,torch] [--workdir DIR]
    python benchmarks/bench_conversion.py --smoke   # tiny config, to check the script

A random-weight checkpoint (`model.safetensors` and `config.json`) is first
written by transformers in a separate process. Each backend then converts it
with `keras_vit.ViT.from_pretrained` in a fresh process, which reports its RSS
after imports, its peak RSS and the wall time of the call. The target is a
peak-minus-before increase of at most 1.5x the checkpoint file size.
`--workdir` keeps the checkpoint there and reuses it on later runs; otherwise a
temporary directory is used and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BACKENDS = ("jax", "tensorflow", "torch")
TARGET = 1.5
VIT_L16 = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    image_size=224,
    patch_size=16,
)
SMOKE = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=32,
    patch_size=8,
)
MB = 1024**2


def build_checkpoint(directory: Path, smoke: bool) -> None:
    """Saves a random-weight transformers ViTModel (with pooler) into `directory`."""
    import transformers

    config = transformers.ViTConfig(**(SMOKE if smoke else VIT_L16))
    transformers.ViTModel(config).save_pretrained(directory)


def convert(directory: Path) -> None:
    """Loads the checkpoint with keras_vit and prints one JSON line of measurements."""
    import resource
    import time

    import keras

    import keras_vit

    status = Path("/proc/self/status").read_text()
    rss_kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    start = time.perf_counter()
    model = keras_vit.ViT.from_pretrained(directory, verbose=False)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "backend": keras.backend.backend(),
        "seconds": seconds,
        "rss_before_bytes": int(rss_kib) * 1024,
        "peak_rss_bytes": peak_kib * 1024,
        "params": model.count_params(),
    }
    print(json.dumps(result), flush=True)


def run_child(mode: str, directory: Path, backend: str, smoke: bool) -> str:
    """Runs this script in `mode` in a fresh process and returns its stdout."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, __file__, mode, str(directory), *(["--smoke"] * smoke)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} on {backend} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def benchmark(directory: Path, backends: list[str], smoke: bool) -> None:
    """Writes the checkpoint if absent, converts it on each backend, prints the table."""
    if not (directory / "model.safetensors").is_file():
        run_child("--build", directory, "torch", smoke)
    size = (directory / "model.safetensors").stat().st_size
    print(f"\nCheckpoint {directory / 'model.safetensors'}: {size / MB:.1f} MB\n")
    print(
        "| backend | conversion time (s) | RSS before (MB) | peak RSS (MB) | increase (MB) "
        f"| increase / checkpoint size | target (<= {TARGET}x) met? |"
    )
    print("|---|---|---|---|---|---|---|")
    for backend in backends:
        result = json.loads(run_child("--convert", directory, backend, smoke).splitlines()[-1])
        increase = result["peak_rss_bytes"] - result["rss_before_bytes"]
        ratio = increase / size
        print(
            f"| {backend} | {result['seconds']:.1f} | {result['rss_before_bytes'] / MB:.0f} "
            f"| {result['peak_rss_bytes'] / MB:.0f} | {increase / MB:.0f} | {ratio:.2f}x "
            f"| {'yes' if ratio <= TARGET else 'no'} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the checkpoint here")
    parser.add_argument("--smoke", action="store_true", help="tiny config, to check the script")
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--convert", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build_checkpoint(args.build, args.smoke)
    elif args.convert:
        convert(args.convert)
    else:
        name = "vit-smoke" if args.smoke else "vit-large-patch16-224"
        backends = args.backends.split(",")
        if args.workdir:
            benchmark(args.workdir / name, backends, args.smoke)
        else:
            with tempfile.TemporaryDirectory() as workdir:
                benchmark(Path(workdir) / name, backends, args.smoke)


if __name__ == "__main__":
    main()
