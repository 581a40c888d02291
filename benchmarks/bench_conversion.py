"""Time and peak memory of loading a transformers ViT-L/16 checkpoint, per Keras backend.

    python benchmarks/bench_conversion.py [--backends jax,tensorflow,torch] [--workdir DIR]
    python benchmarks/bench_conversion.py --smoke   # tiny config, to check the script

A random-weight checkpoint (`model.safetensors` and `config.json`) is first
written by transformers in a separate process. Each backend then converts it
with `keras_vit.ViT.from_pretrained` in a fresh process, which reports its RSS
after imports, its peak RSS and the wall time of the call; transformers'
`ViTModel.from_pretrained` is measured the same way, for comparison. The target is a
peak-minus-before increase of at most 1.5x the checkpoint file size.
`--workdir` keeps the checkpoint there and reuses it on later runs; otherwise a
temporary directory is used and removed at the end.
"""

from __future__ import annotations

import argparse
import functools
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


def rss_bytes() -> int:
    """This process's resident set size now."""
    status = Path("/proc/self/status").read_text()
    return 1024 * int(next(line.split()[1] for line in status.splitlines() if "VmRSS:" in line))


def measure_load(directory: Path, library: str) -> None:
    """Loads the checkpoint with keras_vit or transformers; prints one JSON line."""
    import resource
    import time

    if library == "transformers":
        import transformers

        load, name = transformers.ViTModel.from_pretrained, "transformers (torch)"
    else:
        import keras

        import keras_vit

        load, name = keras_vit.ViT.from_pretrained, f"keras_vit {keras.backend.backend()}"
        load = functools.partial(load, verbose=False)
    before = rss_bytes()
    start = time.perf_counter()
    load(directory)
    seconds = time.perf_counter() - start
    peak = 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"name": name, "seconds": seconds, "before": before, "peak": peak}))


def run_child(arguments: list[str], backend: str = "torch") -> str:
    """Runs this script with `arguments` in a fresh process and returns its stdout."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, __file__, *arguments], env=env, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"{arguments} on {backend} failed:\n{done.stderr.decode()[-3000:]}")
    return done.stdout.decode()


def benchmark(directory: Path, backends: list[str], smoke: bool) -> None:
    """Writes the checkpoint if absent, loads it with each library, prints the table."""
    if not (directory / "model.safetensors").is_file():
        run_child(["--build", str(directory), *(["--smoke"] * smoke)])
    size = (directory / "model.safetensors").stat().st_size
    print(f"\nCheckpoint {directory / 'model.safetensors'}: {size / MB:.1f} MB\n")
    print(
        "| loader | time (s) | RSS before (MB) | peak RSS (MB) | increase (MB) "
        f"| increase / checkpoint size | target (<= {TARGET}x) met? |"
    )
    print("|---|---|---|---|---|---|---|")
    runs = [("keras_vit", backend) for backend in backends] + [("transformers", "torch")]
    for library, backend in runs:
        output = run_child(["--load", str(directory), "--library", library], backend)
        result = json.loads(output.splitlines()[-1])
        increase = result["peak"] - result["before"]
        ratio = increase / size
        print(
            f"| {result['name']} | {result['seconds']:.1f} | {result['before'] / MB:.0f} "
            f"| {result['peak'] / MB:.0f} | {increase / MB:.0f} | {ratio:.2f}x "
            f"| {'yes' if ratio <= TARGET else 'no'} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the checkpoint here")
    parser.add_argument("--smoke", action="store_true", help="tiny config, to check the script")
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--load", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--library", default="keras_vit", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build_checkpoint(args.build, args.smoke)
    elif args.load:
        measure_load(args.load, args.library)
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
