"""Data-parallel LoRA training under a launcher (torchrun, two CPU processes on gloo): the same LoRA as one
process over the same samples, resume across process counts, and only the main process writing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train_motion import make_motion_folder
from test_train_subject import make_subject_folder

import smrabooth
from smrabooth.cli import main
from smrabooth.errors import SmraboothError
from smrabooth.train.distributed import DataParallel

SRC = str(Path(smrabooth.__file__).parents[1])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from smrabooth.models.dinov2 import build_tiny_dinov2
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    root = tmp_path_factory.mktemp("ddp")
    make_subject_folder(root / "subject", n=3)
    make_motion_folder(root / "motion", n_frames=12)
    build_tiny_wan_pipeline().save_pretrained(root / "model")
    build_tiny_dinov2().save_pretrained(root / "dinov2")
    return root


def subject_args(root, out, *extra):
    # the paper recipe: one sample per step and a 2-block model's SuRA block (official: batch 2, block 3)
    return ["train-subject", "--recipe", "paper", "--model", str(root / "model"), "--data", str(root / "subject"),
            "--out", str(root / out), "--rank", "4", "--alpha", "4", "--lr", "1e-3", "--resolution", "64",
            "--projector-width", "16", "--encoder", str(root / "dinov2"), "--no-gradient-checkpointing",
            "--checkpoint-every", "2", "--save-dtype", "fp32", "--cache-dir", str(root / "cache"), "--offline", "--quiet", *extra]


def motion_args(root, out, *extra):
    return ["train-motion", "--recipe", "paper", "--model", str(root / "model"), "--data", str(root / "motion"),
            "--out", str(root / out), "--rank", "4", "--alpha", "4", "--lr", "1e-3", "--frames", "5", "--height", "32",
            "--width", "32",
            "--no-mora", "--no-gradient-checkpointing", "--checkpoint-every", "2", "--save-dtype", "fp32",
            "--cache-dir", str(root / "cache"), "--offline", "--quiet", *extra]


def two_processes(argv):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "smrabooth", *argv], env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def assert_same_lora(a: Path, b: Path, atol: float = 1e-6):
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=1e-4, atol=atol, msg=k)
    b = [v for k, v in ta.items() if "lora_B" in k]
    assert not b or any(v.abs().sum() > 0 for v in b)  # a LoRA trained (B starts at zero)


def test_subject_two_processes_equal_one_process_over_the_same_samples_and_resume_across(setup):
    root = setup
    assert main(subject_args(root, "one", "--steps", "4", "--batch-size", "2")) == 0
    two_processes(subject_args(root, "two", "--steps", "4"))
    one, two = root / "one", root / "two"
    # one process computes its batch of 2 in one forward, two processes one each: float rounding apart, which
    # AdamW can turn into up to about lr a step where a gradient is near zero (test_train_subject: 1% of lr x steps)
    assert_same_lora(one / "subject_lora.safetensors", two / "subject_lora.safetensors", atol=0.01 * 1e-3 * 4)
    assert_same_lora(one / "projector.safetensors", two / "projector.safetensors", atol=0.01 * 1e-3 * 4)
    # the main process alone wrote: one log line per step, one record of the call
    assert [r["step"] for r in map(json.loads, (two / "log.jsonl").read_text().splitlines())] == [1, 2, 3, 4]
    record = json.loads((two / "parallel.json").read_text())
    assert record["effective_batch"] == 2 and record["calls"][0]["processes"] == 2
    losses = lambda run: [json.loads(x)["loss"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert losses(one) == pytest.approx(losses(two), rel=1e-4)

    # started on two processes, resumed on one: accumulation 2 keeps the effective batch, same samples
    two_processes(subject_args(root, "moved", "--steps", "2"))
    assert main(subject_args(root, "moved", "--steps", "4", "--resume")) == 0
    assert_same_lora(one / "subject_lora.safetensors", root / "moved" / "subject_lora.safetensors", atol=0.01 * 1e-3 * 4)
    calls = json.loads((root / "moved" / "parallel.json").read_text())["calls"]
    assert [(c["from_step"], c["processes"], c["gradient_accumulation"]) for c in calls] == [(0, 2, 1), (2, 1, 2)]


@pytest.mark.parametrize("backbone", ["wan2.1", "zeroscope"])
def test_motion_two_processes_equal_one_process_with_accumulation(setup, backbone):
    """Every backbone's trainer takes its share of a launch (train/session.py): the U-Net's as Wan's."""
    root = setup
    args = motion_args
    if backbone == "zeroscope":
        from smrabooth.backbones import BACKBONES

        if not (root / "zeroscope").is_dir():
            BACKBONES["zeroscope"].build_tiny().save_pretrained(root / "zeroscope")

        def args(root, out, *extra):  # the U-Net's trainer has no recipe; frames need not be 4k+1
            argv = motion_args(root, out, *extra)[3:]
            argv[argv.index("--model") + 1] = str(root / "zeroscope")
            argv[argv.index("--frames") + 1] = "4"
            return ["train-motion", *argv]
    one, two = f"m-one-{backbone}", f"m-two-{backbone}"
    assert main(args(root, one, "--steps", "3", "--gradient-accumulation", "2")) == 0
    two_processes(args(root, two, "--steps", "3"))
    assert_same_lora(root / one / "motion_lora.safetensors", root / two / "motion_lora.safetensors")


def test_resume_that_cannot_keep_the_effective_batch_says_why():
    dp = DataParallel(processes=3, rank=0, batch_size=1)
    with pytest.raises(SmraboothError, match="effective batch of 2 samples per step; 3 process"):
        dp.keep_effective_batch(2)
    dp = DataParallel(processes=1, rank=0, batch_size=1)
    dp.keep_effective_batch(4)
    assert dp.accumulation == 4 and dp.effective_batch == 4
