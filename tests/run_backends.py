"""Runs the test suite once per Keras backend and reports each result.

Usage:
    python tests/run_backends.py [--backends jax,tensorflow,torch] [PYTEST ARGS...]

Each backend runs in its own pytest process with KERAS_BACKEND set. The exit
code is non-zero if any backend fails or collects no tests.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

BACKENDS = ("jax", "tensorflow", "torch")
ROOT = Path(__file__).resolve().parent.parent
COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped)")
SUMMARY = re.compile(r"^=*\s*\d+ (passed|failed|errors?|skipped|deselected).* in [\d.]+s")


def run_backend(backend: str, pytest_args: list[str]) -> tuple[dict[str, int], int, float]:
    """Runs pytest under one backend, echoing its output.

    Returns:
        The counts of the final summary line, pytest's exit code and the wall time.
    """
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *pytest_args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    summary = ""
    for line in process.stdout:
        sys.stdout.write(line)
        if SUMMARY.match(line):
            summary = line
    code = process.wait()
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    for number, kind in COUNT.findall(summary):
        counts["errors" if kind.startswith("error") else kind] += int(number)
    return counts, code, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args, pytest_args = parser.parse_known_args(argv)
    results = {}
    for backend in args.backends.split(","):
        print(f"\n######## KERAS_BACKEND={backend} ########", flush=True)
        results[backend] = run_backend(backend, pytest_args)

    print("\n| backend | passed | failed | errors | skipped | time (s) | result |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for backend, (counts, code, seconds) in results.items():
        good = code == 0 and counts["passed"] > 0
        ok &= good
        print(
            f"| {backend} | {counts['passed']} | {counts['failed']} | {counts['errors']} | "
            f"{counts['skipped']} | {seconds:.0f} | {'ok' if good else f'FAIL (exit {code})'} |"
        )
    passed = sum(c["passed"] for c, _, _ in results.values())
    failed = sum(c["failed"] + c["errors"] for c, _, _ in results.values())
    skipped = sum(c["skipped"] for c, _, _ in results.values())
    print(f"\ntotal: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
