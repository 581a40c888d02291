"""Side-by-side timing: one worker process per implementation, timed in turn.

The parent starts each worker (`spawn`), asks every worker to build and warm up
its cases (`Worker.prepare`), then times one batch per worker in round-robin
order (`alternate`), so drift on a shared machine hits every implementation
alike. A worker is the benchmark script itself run with `--worker ...`; it calls
`serve` with a function that turns a case name into a zero-argument step.

With a baseline checkout (`checkout.baseline_checkout`), each keras_vit worker
gets a twin that runs the same script but imports the checkout's keras_vit.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from checkout import Checkout, with_pythonpath

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # quiet TensorFlow, in the parent too
RESULTS = Path(__file__).resolve().parent / "results"


# A case whose second warm-up step (the first compiles) takes longer than this is
# timed once: at that length run-to-run noise no longer matters, and repeats
# would only cost minutes. A `--baseline` comparison times every run instead,
# because its ratios must not rest on one warm-up step.
SINGLE_RUN_SECONDS = 10.0


def serve(
    build: Callable[[str], Callable[[], object]],
    warmup: int,
    single_run_seconds: float = SINGLE_RUN_SECONDS,
) -> None:
    """The worker loop: answers `prepare CASE`, `time CASE` and `drop CASE` lines on stdin.

    Args:
        build: turns a case name into a step function; called once per case.
        warmup: steps run by `prepare` before any step is timed.
        single_run_seconds: a case whose second warm-up step takes longer is
            timed by that step alone.
    """
    steps: dict[str, Callable[[], object]] = {}
    single: dict[str, float] = {}
    keras_vit = importlib.util.find_spec("keras_vit").origin  # which checkout, for the parent
    print(json.dumps({"ready": True, "keras_vit": keras_vit}), flush=True)
    for line in sys.stdin:
        command, case = line.split(maxsplit=1)
        case = case.strip()
        try:
            if command == "drop":
                steps.pop(case, None)
                gc.collect()
                print(json.dumps({"ok": True}), flush=True)
            elif command == "prepare":
                steps[case] = build(case)
                for index in range(warmup):
                    seconds = timed(steps[case])
                    if index and seconds > single_run_seconds:
                        single[case] = seconds
                        break
                print(json.dumps({"single": case in single}), flush=True)
            else:
                seconds = single.get(case) or timed(steps[case])
                print(json.dumps({"seconds": seconds}), flush=True)
        except Exception as error:  # reported to the parent, which shows it in the table
            message = f"failed: {type(error).__name__}: {error}"[:300]
            print(json.dumps({"error": message}), flush=True)


def timed(step: Callable[[], object]) -> float:
    """Seconds one call of `step` takes."""
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


class Worker:
    """A worker process of one implementation (a library on one Keras backend).

    Args:
        label: the implementation's name in the tables.
        argv: the worker's command line, after the interpreter.
        backend: its `KERAS_BACKEND`.
        keras_vit_from: a checkout to import keras_vit from (put first on PYTHONPATH),
            making this a baseline worker; None: whichever keras_vit the environment imports.
    """

    def __init__(
        self,
        label: str,
        argv: list[str],
        backend: str = "torch",
        keras_vit_from: Path | None = None,
    ):
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        if keras_vit_from:
            env = with_pythonpath(keras_vit_from, env)
        self.label = label
        self.backend = backend
        self.keras_vit_from = keras_vit_from
        self.baseline = keras_vit_from is not None
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.errors: dict[str, str] = {}
        self.single_run: set[str] = set()

    def wait_until_ready(self) -> None:
        """Waits for the worker's imports to finish; raises if it died, or if a baseline
        worker would import another keras_vit than its checkout's."""
        reply = self._reply()
        if "ready" not in reply:
            raise RuntimeError(f"the {self.label} worker failed to start")
        source = self.keras_vit_from
        if source and not Path(reply["keras_vit"]).is_relative_to(source):
            raise RuntimeError(
                f"the {self.label} worker imports {reply['keras_vit']}, not {source}"
            )

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        return json.loads(line) if line else {"error": "the worker process died"}

    def _ask(self, command: str, case: str) -> dict:
        if case in self.errors:
            return {"error": self.errors[case]}
        try:
            self.process.stdin.write(f"{command} {case}\n")
            self.process.stdin.flush()
            reply = self._reply()
        except BrokenPipeError:
            reply = {"error": "the worker process died"}
        if reply.get("error") == "the worker process died":
            reply["error"] = (
                f"failed: the worker died (exit {self.process.wait()}; -9 is out of memory)"
            )
        if "error" in reply:
            self.errors[case] = reply["error"]
        return reply

    def prepare(self, case: str) -> None:
        """Builds and warms up `case`; a failure is kept and reported, not raised."""
        if self._ask("prepare", case).get("single"):
            self.single_run.add(case)

    def drop(self, case: str) -> None:
        """Frees `case`'s model in the worker."""
        self._ask("drop", case)

    def skip(self, case: str, reason: str) -> None:
        """Leaves `case` out of the timing; the table shows `reason`."""
        self.errors[case] = f"skipped: {reason}"

    def time(self, case: str) -> float | None:
        """Seconds for one step of `case`, or None if the case failed."""
        return self._ask("time", case).get("seconds")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


# Pause before each timed step, so that the previous worker's idle threads (OpenMP
# and Eigen spin-wait for a while after their last task) have stopped competing for
# the cores.
SETTLE_SECONDS = 0.5


def alternate(pairs: list[tuple[Worker, str]], runs: int) -> list[float | None]:
    """Median seconds per (worker, case), timing the pairs in turn `runs` times, then
    freeing their models.

    Returns:
        One median per pair, in order; None where the case failed.
    """
    for worker, case in pairs:
        worker.prepare(case)
    times: list[list[float]] = [[] for _ in pairs]
    for _ in range(runs):
        for index, (worker, case) in enumerate(pairs):
            time.sleep(SETTLE_SECONDS)
            seconds = worker.time(case)
            if seconds is not None:
                times[index].append(seconds)
    for worker, case in pairs:
        worker.drop(case)
    return [statistics.median(values) if values else None for values in times]


def error_cell(worker: Worker, case: str) -> str:
    """A short table cell for a failed or skipped case."""
    return worker.errors.get(case, "failed: no timing")[:90]


def start_peer_workers(
    script: str,
    backends: list[str],
    forwarded: list[str],
    keras_hub: bool = True,
    baseline: Checkout | None = None,
) -> dict[str, Worker]:
    """Workers of keras_vit per backend, transformers, and (if `keras_hub` and it is
    installed) keras-hub per backend; or, with a `baseline`, keras_vit only.

    Args:
        script: the benchmark script; each worker runs `script --worker LIBRARY *forwarded`.
        backends: the Keras backends of the keras_vit and keras-hub workers.
        forwarded: options passed on to every worker.
        keras_hub: whether to start keras-hub workers, if keras-hub is installed.
        baseline: a checkout of another commit: next to each `keras_vit BACKEND` worker,
            start a `keras_vit@REF BACKEND` one importing its keras_vit, and no others.

    Returns:
        The started workers by label, each keras_vit one followed by its baseline twin.
    """

    def start(label: str, library: str, backend: str = "torch", source: Path | None = None):
        return Worker(label, [script, "--worker", library, *forwarded], backend, source)

    workers = {}
    for backend in backends:
        workers[f"keras_vit {backend}"] = start(f"keras_vit {backend}", "keras_vit", backend)
        if baseline:
            label = f"keras_vit@{baseline.ref} {backend}"
            workers[label] = start(label, "keras_vit", backend, baseline.path)
    if not baseline:
        workers["transformers"] = start("transformers", "transformers")
    if keras_hub and not baseline and importlib.util.find_spec("keras_hub"):
        for backend in backends:
            workers[f"keras-hub {backend}"] = start(f"keras-hub {backend}", "keras_hub", backend)
    for worker in workers.values():  # they start concurrently
        worker.wait_until_ready()
    return workers


def cpu_line() -> str:
    """`lscpu`'s model name and vector-instruction flags (AVX, AMX, FMA), for the results."""
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "CPU: unknown (lscpu failed)"
    fields = dict(line.split(":", 1) for line in output.splitlines() if ":" in line)
    flags = [
        flag for flag in fields.get("Flags", "").split() if flag.startswith(("avx", "amx", "fma"))
    ]
    return f"CPU: {fields.get('Model name', 'unknown').strip()}; flags: {' '.join(flags) or 'none'}"


def write_results(filename: str, header: str, sections: list[str]) -> Path:
    """Writes the tables to `benchmarks/results/<filename>` atomically; returns the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / filename
    temporary = path.with_suffix(".tmp")
    temporary.write_text(header + "\n\n" + "\n\n".join(sections) + "\n")
    os.replace(temporary, path)
    print(f"written to {path}")
    return path
