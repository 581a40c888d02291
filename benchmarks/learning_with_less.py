"""Learning with less on the digits: what MAE pretraining and DeiT distillation give.

    python benchmarks/learning_with_less.py [--backend tensorflow] [--rows A,B,C,D,E]
        [--epochs 60] [--pretrain-epochs 100] [--teacher-epochs 30]
        [--finetune-args "..."] [--pretrain-args "..."] [--results NAME]
    python benchmarks/learning_with_less.py --smoke     # one epoch each, to check the script

Every row trains the same digits ViT (`examples/finetune.py`'s, with
`--finetune-args` added) for the same epochs and reports its accuracy on the
fixed 360-image test split:

| Row | What it is |
|---|---|
| A | from scratch, 10% of the training labels (stratified, fixed seed) |
| B | MAE-pretrained on all training images without labels, then as A |
| C | from scratch, all the labels (`make run`) |
| D | MAE-pretrained, then as C |
| E | as C, DeiT-distilled (hard) from a small CNN teacher trained on the same labels |
| E10 | as A, distilled from a CNN teacher trained on the same 10% |
| As | as A, with the MAE encoder's fixed sin-cos positions (B's architecture, untrained) |

The MAE (`examples/pretrain_mae.py`) and the teachers (`examples/train_teacher.py`)
are trained first, once, as the chosen rows need them. Each step is its own
process on `--backend`, logged to `<work>/<step>.log`, and timed; a step already
run with the same command is read back from `<work>/<step>.json`, not rerun. The table, with
the CPU, the versions and the exact commands, goes to
`benchmarks/results/<results>.md`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import cpu_line, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FEW_LABELS = "0.1"


@dataclasses.dataclass(frozen=True)
class Step:
    """One process of the comparison: a script, its arguments, and the steps it needs first."""

    description: str
    script: str
    arguments: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()


def steps(args: argparse.Namespace, work: Path) -> dict[str, Step]:
    """Every step by name; the arguments name the earlier steps' outputs under `work`."""
    finetune = ("--epochs", str(args.epochs), *shlex.split(args.finetune_args))
    few = ("--label-fraction", FEW_LABELS)
    mae = ("--weights", str(work / "mae" / "model"))
    pretrain = ("--epochs", str(args.pretrain_epochs), *shlex.split(args.pretrain_args))
    teacher = ("--epochs", str(args.teacher_epochs))
    # As many steps as the teacher of all the labels: a tenth of the data, ten times the epochs.
    teacher10 = ("--epochs", str(round(args.teacher_epochs / float(FEW_LABELS))), *few)
    return {
        "mae": Step("MAE pretraining, all training images", "pretrain_mae.py", pretrain),
        "teacher": Step("CNN teacher, all labels", "train_teacher.py", teacher),
        "teacher10": Step("CNN teacher, 10% of the labels", "train_teacher.py", teacher10),
        "A": Step("scratch, 10% labels", "finetune.py", (*finetune, *few)),
        "As": Step(
            "as A, with the MAE encoder's fixed sin-cos positions",
            "finetune.py",
            (*finetune, *few, "--position-embedding", "sincos"),
        ),
        "B": Step("MAE, then 10% labels", "finetune.py", (*finetune, *few, *mae), ("mae",)),
        "C": Step("scratch, all labels", "finetune.py", finetune),
        "D": Step("MAE, then all labels", "finetune.py", (*finetune, *mae), ("mae",)),
        "E": Step(
            "distilled from the CNN, all labels",
            "finetune.py",
            (*finetune, "--teacher", str(work / "teacher" / "teacher.keras")),
            ("teacher",),
        ),
        "E10": Step(
            "distilled from the 10% CNN, 10% labels",
            "finetune.py",
            (*finetune, *few, "--teacher", str(work / "teacher10" / "teacher.keras")),
            ("teacher10",),
        ),
    }


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a step did: its command, the last line it printed, its wall time in seconds."""

    command: str
    last_line: str
    seconds: float

    @property
    def value(self) -> float:
        """The number of the last line, `name: value`."""
        return float(self.last_line.rsplit(":", 1)[1])


def run_step(name: str, step: Step, work: Path, backend: str) -> Outcome:
    """Runs one step into `work/name`, logged to `work/name.log`.

    A step that already ran with the same command on the same backend is not
    run again: its outcome is read back from `work/name.json`, so rows can be
    added to a comparison one run at a time.
    """
    command = [
        sys.executable,
        str(ROOT / "examples" / step.script),
        *step.arguments,
        "--output",
        str(work / name),
        "--overwrite",
    ]
    log, record = work / f"{name}.log", work / f"{name}.json"
    print(f"{name}: {step.description} ... ", end="", flush=True)
    if record.exists():
        earlier = json.loads(record.read_text())
        if earlier.pop("backend") == backend and earlier["command"] == shlex.join(command):
            print(f"{earlier['last_line']} ({earlier['seconds']:.0f} s, from {record})")
            return Outcome(**earlier)
    start = time.perf_counter()
    with log.open("w") as out:
        out.flush()
        result = subprocess.run(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )
    seconds = time.perf_counter() - start
    lines = log.read_text().splitlines()
    if result.returncode != 0:
        raise SystemExit(f"{name} failed (exit {result.returncode}); see {log}:\n{lines[-1]}")
    print(f"{lines[-1]} ({seconds:.0f} s)")
    outcome = Outcome(shlex.join(command), lines[-1], seconds)
    temporary = record.with_suffix(".tmp")
    temporary.write_text(json.dumps({"backend": backend, **dataclasses.asdict(outcome)}))
    os.replace(temporary, record)
    return outcome


def shown(command: str) -> str:
    """`command` as a reader would type it: `python`, and paths relative to the repository."""
    return command.replace(sys.executable, "python").replace(f"{ROOT}/", "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    parser.add_argument("--rows", default="A,B,C,D,E", help="comma-separated, of A B C D E E10 As")
    parser.add_argument("--epochs", type=int, default=60, help="fine-tuning epochs, every row")
    parser.add_argument("--pretrain-epochs", type=int, default=100)
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--finetune-args", default="", help="added to every finetune.py row")
    parser.add_argument("--pretrain-args", default="", help="added to pretrain_mae.py")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "learning_with_less")
    parser.add_argument("--results", default="learning_with_less", help="results file's name")
    parser.add_argument("--smoke", action="store_true", help="one epoch each; no results file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs = args.pretrain_epochs = args.teacher_epochs = 1
    plan = steps(args, args.work)
    rows = args.rows.split(",")
    unknown = [row for row in rows if row not in plan or not row[0].isupper()]
    if unknown:
        raise SystemExit(f"Unknown rows {unknown}; choose among A, B, C, D, E, E10, As.")
    needed = list(dict.fromkeys(need for row in rows for need in plan[row].needs))
    args.work.mkdir(parents=True, exist_ok=True)
    done = {name: run_step(name, plan[name], args.work, args.backend) for name in needed + rows}

    lines = [
        "| Row | What it is | Test accuracy | Wall time |",
        "|---|---|---|---|",
        *(
            f"| {name} | {plan[name].description} | {done[name].value:.4f} | "
            f"{done[name].seconds:.0f} s |"
            for name in rows
        ),
    ]
    prior = [
        f"- {name}: {plan[name].description}, `{done[name].last_line}`, {done[name].seconds:.0f} s"
        for name in needed
    ]
    commands = [f"- {name}: `{shown(outcome.command)}`" for name, outcome in done.items()]
    versions = ", ".join(
        f"{package} {metadata.version(package)}"
        for package in ("keras", {"tensorflow": "tensorflow-cpu"}.get(args.backend, args.backend))
    )
    header = (
        f"# Learning with less on the digits ({args.backend})\n\n{cpu_line()}\n\n{versions}; "
        f"fine-tuning {args.epochs} epochs per row."
    )
    sections = ["\n".join(lines), "Trained first:\n" + "\n".join(prior)]
    sections.append("Commands:\n" + "\n".join(commands))
    print("\n\n".join([header, *sections]))
    if not args.smoke:
        write_results(f"{args.results}.md", header, sections)


if __name__ == "__main__":
    main()
