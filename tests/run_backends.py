"""Runs the test suite once per Keras backend and reports each result.

Usage:
    python tests/run_backends.py [--backends jax,tensorflow,torch] [--jobs 2] [PYTEST ARGS...]

Each backend runs in its own pytest process with KERAS_BACKEND set, `--jobs` of
them at a time. The suite is mostly single-threaded Python and compilation, so
two passes share two cores well; each pass then gets its share of the cores'
threads (`OMP_NUM_THREADS`), so that their thread pools do not spin against
each other. A pass's output is printed whole when it ends. The exit code is
non-zero if any backend fails or collects no tests.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKENDS = ("jax", "tensorflow", "torch")
ROOT = Path(__file__).resolve().parent.parent
COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped)")
SUMMARY = re.compile(r"^=*\s*\d+ (passed|failed|errors?|skipped|deselected).* in [\d.]+s")


class BackendPass:
    """One pytest process under one backend, its output going to a temporary file."""

    def __init__(self, backend: str, pytest_args: list[str], threads: int):
        env = {
            **os.environ,
            "KERAS_BACKEND": backend,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "OMP_NUM_THREADS": str(threads),
        }
        self.backend = backend
        self.log = tempfile.TemporaryFile("w+")
        self.start = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *pytest_args],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        print(f"started KERAS_BACKEND={backend}", flush=True)

    def finish(self) -> tuple[dict[str, int], int, float]:
        """Prints the pass's output; returns its summary counts, exit code and wall time."""
        seconds = time.perf_counter() - self.start
        self.log.seek(0)
        output = self.log.read()
        self.log.close()
        print(f"\n######## KERAS_BACKEND={self.backend} ({seconds:.0f} s) ########")
        print(output, flush=True)
        summaries = [line for line in output.splitlines() if SUMMARY.match(line)]
        summary = summaries[-1] if summaries else ""  # pytest's own is the last
        counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
        for number, kind in COUNT.findall(summary):
            counts["errors" if kind.startswith("error") else kind] += int(number)
        return counts, self.process.returncode, seconds


def run_passes(
    backends: list[str], pytest_args: list[str], jobs: int
) -> dict[str, tuple[dict[str, int], int, float]]:
    """Runs one pass per backend, `jobs` at a time, in the order given.

    Returns:
        {backend: (summary counts, pytest's exit code, wall seconds)}.
    """
    threads = max(1, (os.cpu_count() or 1) // jobs)
    waiting, running, results = list(backends), [], {}
    while waiting or running:
        while waiting and len(running) < jobs:
            running.append(BackendPass(waiting.pop(0), pytest_args, threads))
        time.sleep(1)
        for backend_pass in [p for p in running if p.process.poll() is not None]:
            running.remove(backend_pass)
            results[backend_pass.backend] = backend_pass.finish()
    return {backend: results[backend] for backend in backends}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--jobs", type=int, default=2, help="backends run at a time")
    args, pytest_args = parser.parse_known_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    start = time.perf_counter()
    results = run_passes(args.backends.split(","), pytest_args, args.jobs)

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
    wall = time.perf_counter() - start
    print(f"\ntotal: {passed} passed, {failed} failed, {skipped} skipped in {wall:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
