"""Parity of the `official` recipe with the authors' released code, by EXECUTING their code.

    python scripts/check_official_parity.py --checkout /work/authors/03733b0 --python /work/envs/authors/bin/python

Two processes, two environments. Their side (scripts/official_parity/theirs.py) runs in an environment with their
pinned packages: their training script (examples/wanvideo/model_training/train.py, as a script, on their
--num_processes CPU processes) with the flags of their Wan2.1-T2V-1.3B-Subject.sh and -Motion.sh, and their
combine_inference.py, on the same tiny random Wan weights, images, clip, noise and timesteps as our side. Our side
(scripts/official_parity/ours.py) runs this project's `train_subject`, `train_motion` and `generate` with the
`official` recipe, answering each of our trainers' random draws with theirs. Tensors go between the two as
safetensors files in --work. Each row of the printed table is one quantity of both runs, with a tolerance and its
reason (scripts/official_parity/rows.py); the exit code is 1 when any row is over its tolerance.

Their environment (once; nothing of theirs is copied into this repository):

    python3.11 -m venv /work/envs/authors
    /work/envs/authors/bin/pip install torch==2.7.0 torchvision==0.22.0     # their README's pins; CPU is enough
    grep -v xformers CHECKOUT/requirements.txt | sed 's/opencv-python/opencv-python-headless/' \\
        | /work/envs/authors/bin/pip install -r /dev/stdin safetensors
    /work/envs/authors/bin/pip install --no-deps -e CHECKOUT

(xformers is GPU-only and unused on this path; opencv's headless build imports without a display.) A checkout:
`git -C <their repo> archive 03733b0 | tar -x -C CHECKOUT`.

Options: --plant NAME plants one difference on our side (the harness must then exit 1; --plant list names them);
--reuse reuses their records from an earlier run in --work (their side does not depend on our plants);
--write-fixture writes tests/fixtures/official_parity.safetensors for tests/test_official_parity.py.
Sizes and run lengths (tiny models, 4 subject steps, 3 steps per motion phase) are in official_parity/common.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "official_parity"), str(HERE)]

NEEDED = ("examples/wanvideo/model_training/train.py", "diffsynth/pipelines/wan_video_new.py",
          "diffsynth/utils/utils_loss.py", "combine_inference.py", "Wan2.1-T2V-1.3B-Subject.sh",
          "Wan2.1-T2V-1.3B-Motion.sh")


def fail(message: str) -> None:
    print(f"check_official_parity: {message}", file=sys.stderr)
    sys.exit(2)


def their_run(python: Path, checkout: Path, work: Path, mode: str, *extra: str, processes: int = 1) -> None:
    """One run of theirs.py in their environment; its output goes to work/logs/."""
    script = HERE / "official_parity" / "theirs.py"
    args = [mode, "--checkout", str(checkout), "--exchange", str(work), *extra]
    if processes > 1:
        cmd = [str(python), "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_port", str(29500 + os.getpid() % 1000), str(script), *args]
    else:
        cmd = [str(python), str(script), *args]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": "",
           "TOKENIZERS_PARALLELISM": "false"}
    log = work / "logs" / f"theirs-{mode}-{'-'.join(extra).replace('--', '')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log, "w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=work, check=False).returncode
    print(f"  their {mode} {' '.join(extra)}: {time.time() - start:.0f} s (log {log})", flush=True)
    if code:
        tail = log.read_text().strip().splitlines()[-3:]
        fail(f"their side failed ({' '.join(cmd[-8:])}); last lines of {log}:\n  " + "\n  ".join(tail))


def main():
    from plants import PLANTS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("legacy_checkout", nargs="?", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--checkout", type=Path, help="their repository at the commit to compare (03733b0)")
    ap.add_argument("--python", type=Path, default=Path("/work/envs/authors/bin/python"),
                    help="the Python of their environment (see above)")
    ap.add_argument("--work", type=Path, help="exchange folder (default: a new temporary folder)")
    ap.add_argument("--plant", action="append", default=[], help="plant a difference on our side (list: names them)")
    ap.add_argument("--reuse", action="store_true", help="reuse their records already in --work")
    ap.add_argument("--stages", default="subject,motion,sample,bf16",
                    help="comma list of stages: subject, motion (motion1: its phase 1 only), sample, bf16")
    ap.add_argument("--write-fixture", action="store_true", help="write tests/fixtures/official_parity.safetensors")
    args = ap.parse_args()
    if "list" in args.plant:
        for name, (what, _) in PLANTS.items():
            print(f"{name:14s} {what}")
        return
    checkout = args.checkout or args.legacy_checkout
    if checkout is None:
        fail("--checkout is needed: pass a checkout of the authors' repository")
    checkout = checkout.resolve()
    missing = [p for p in NEEDED if not (checkout / p).is_file()]
    if missing:
        fail(f"{checkout} has no {missing[0]}: pass a checkout of the authors' repository")
    if not args.python.is_file():
        fail(f"--python {args.python}: not found; make their environment first (python "
             f"scripts/check_official_parity.py --help says how)")
    unknown = [p for p in args.plant if p not in PLANTS]
    if unknown:
        fail(f"--plant {unknown[0]}: unknown; choose from {', '.join(PLANTS)}")
    stages = args.stages.split(",")
    if any(s not in ("subject", "motion", "motion1", "sample", "bf16") for s in stages):
        fail(f"--stages {args.stages}: choose from subject, motion, motion1, sample, bf16")
    work = (args.work or Path(tempfile.mkdtemp(prefix="official-parity-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)

    import ours
    import torch
    from compare import (
        compare_motion,
        compare_motion_phase1,
        compare_sample,
        compare_subject,
        their_sample,
        their_stage,
    )
    from plants import planted
    from rows import print_table

    torch.set_num_threads(1)  # tiny tensors: a second thread costs more in synchronisation than it gains
    commit = their_commit(checkout)
    print(f"their code: {checkout} ({commit}); their environment: {args.python}; work folder: {work}", flush=True)
    if not (args.reuse and (work / "info.json").is_file()):
        their_run(args.python, checkout, work, "info")
    info = json.loads((work / "info.json").read_text())
    if not (args.reuse and (work / "plan.json").is_file()):
        ours.prepare(work, info)
    runs = {"subject": ("train", "--stage", "subject", "--dtype", "fp32"),
            "motion": ("train", "--stage", "motion", "--dtype", "fp32"),
            "motion1": ("train", "--stage", "motion", "--dtype", "fp32"),
            "bf16": ("train", "--stage", "subject", "--dtype", "bf16"), "sample": ("sample",)}
    folders = {"subject": "subject-fp32", "motion": "motion-fp32", "motion1": "motion-fp32", "bf16": "subject-bf16",
               "sample": "sample"}
    for stage in stages:
        done = (work / "theirs" / folders[stage] / ("sample.safetensors" if stage == "sample" else "rank0.safetensors"))
        if not (args.reuse and done.is_file()):
            mode, *extra = runs[stage]
            nproc = info["motion" if "motion" in stage else "subject"]["num_processes"] if mode == "train" else 1
            their_run(args.python, checkout, work, mode, *extra, processes=nproc)

    rows = []
    ours_dir = work / ("ours-" + "-".join(args.plant) if args.plant else "ours")
    with planted(args.plant):
        for stage in stages:
            start = time.time()
            shutil.rmtree(ours_dir / stage, ignore_errors=True)  # our run folders are new every time
            theirs = work / "theirs" / folders[stage]
            if stage in ("subject", "bf16"):
                dtype = "bf16" if stage == "bf16" else "fp32"
                th = their_stage(theirs, "subject")
                result = ours.run_subject(work, th, ours_dir / stage, dtype)
                rows += compare_subject(th, result, "subject" if dtype == "fp32"
                                        else "subject bf16", bf16=dtype == "bf16")
            elif stage == "motion":
                th = their_stage(theirs, "motion")
                rows += compare_motion(th, ours.run_motion(work, th, ours_dir / stage, info))
            elif stage == "motion1":  # phase 1 only: seconds, where the MoRA phase takes minutes
                th = their_stage(theirs, "motion")
                rows += compare_motion_phase1(th, ours.run_motion(work, th, ours_dir / stage, info, phase1_only=True))
            else:
                th = their_sample(theirs / "sample.safetensors")
                # the files their combine_inference.py loads: the subject run's LoRA, the motion run's temporal one
                trained = sorted([*(work / "theirs").glob("subject-fp32/out/*/loras/epoch-*.safetensors"),
                                  *(work / "theirs").glob("motion-fp32/out/*/loras/temporal/epoch-*.safetensors")])
                rows += compare_sample(th, ours.run_sample(work, th["meta"], info, trained))
            print(f"  our {stage}: {time.time() - start:.0f} s", flush=True)
    print(f"\nofficial recipe vs the authors' code at {commit}"
          + (f", planted: {', '.join(args.plant)}" if args.plant else ""))
    print_table(rows)
    if args.write_fixture:
        from fixture import write_fixture

        print(f"fixture: {write_fixture(work, commit, info)}")
    sys.exit(0 if all(r.ok for r in rows) else 1)


def their_commit(checkout: Path) -> str:
    """The commit of their checkout: git's, or the name of an exported folder (git archive keeps no history)."""
    if (checkout / ".git").exists():
        try:
            return subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return checkout.name


if __name__ == "__main__":
    main()
