"""`smrabooth reproduce` on the tiny model: the plan, the content-checked done markers, the split of work, and
the whole experiment on two worker processes, killed mid-plan and resumed."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train_motion import make_motion_folder
from test_train_subject import make_subject_folder

import smrabooth
from smrabooth.errors import SmraboothError
from smrabooth.reproduce import (
    Job,
    ReproduceConfig,
    dry_run_text,
    marker_path,
    parse_shard,
    plan,
    scan,
    shard_jobs,
    split_by_cost,
)

SRC = str(Path(smrabooth.__file__).parents[1])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two subjects and two motions in the authors' layout, the tiny Wan model and a tiny CLIP."""
    from smrabooth.metrics.tiny import build_tiny_clip
    from smrabooth.models.dinov2 import build_tiny_dinov2
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    root = tmp_path_factory.mktemp("reproduce")
    for name in ("ball", "disk"):
        make_subject_folder(root / "data" / "subject_customized" / name)
    for name in ("glide", "slide"):
        make_motion_folder(root / "data" / "motion_customized" / "video" / name, n_frames=12)
    build_tiny_wan_pipeline().save_pretrained(root / "model")
    build_tiny_clip(root / "clip")
    build_tiny_dinov2().save_pretrained(root / "dinov2")
    return root


def settings(root: Path, out: str = "exp") -> dict:
    return {
        "data": str(root / "data"), "model": str(root / "model"), "out": str(root / out), "methods": ("wan", "no_mora"),
        "seeds": (0,),
        "subject_args": f"--steps 2 --rank 4 --alpha 4 --resolution 64 --projector-width 16 --encoder {root / 'dinov2'} "
                     f"--no-gradient-checkpointing --checkpoint-every 1 --save-dtype fp32 --cache-dir {root / 'cache'}",
        "motion_args": f"--steps 2 --rank 4 --alpha 4 --frames 5 --height 32 --width 32 --no-gradient-checkpointing "
                    f"--checkpoint-every 1 --save-dtype fp32 --cache-dir {root / 'cache'}",
        "generate_args": "--frames 5 --height 32 --width 32 --steps 2",
        "evaluate_args": f"--metrics clip_t,clip_i,temporal_consistency --clip-model {root / 'clip'} --device cpu",
        "offline": True, "recipe": "paper"}  # paper: the 2-block tiny model has no SuRA block 3 (official's)


def cli_args(s: dict) -> list[str]:
    return ["--recipe", s["recipe"], "--data", s["data"], "--model", s["model"], "--out", s["out"],
            "--methods", ",".join(s["methods"]),
            "--seeds", "0", "--subject-args", s["subject_args"], "--motion-args", s["motion_args"],
            "--generate-args", s["generate_args"], "--evaluate-args", s["evaluate_args"], "--offline"]


def test_plan_lists_every_job_once_in_stage_order(dataset):
    jobs = plan(ReproduceConfig(**settings(dataset)))
    kinds = [j.kind for j in jobs]
    # no_mora: a SuRA subject LoRA per subject, a plain motion LoRA per motion; wan needs none
    assert sorted(j.name for j in jobs if j.stage == "train") == [
        "loras/dit/motion/glide-plain", "loras/dit/motion/slide-plain",
        "loras/dit/subject/ball-sura", "loras/dit/subject/disk-sura"]
    assert kinds.count("generate") == kinds.count("evaluate") == 2 * 4  # 2 methods x 4 subject-motion prompts
    assert len({j.name for j in jobs}) == len(jobs)
    order = {j.name: i for i, j in enumerate(jobs)}
    assert all(order[n] < order[j.name] for j in jobs for n in j.needs)
    wan = [j for j in jobs if j.kind == "generate" and j.spec["method"] == "wan"]
    assert all(not j.needs for j in wan) and all("--no-mora" in j.spec["argv"] for j in jobs if j.kind == "motion")


@pytest.mark.parametrize("recipe, preset", [(None, "official"), ("paper", "paper"), ("official", "official")])
def test_every_video_is_sampled_with_the_preset_of_the_training_recipe(dataset, recipe, preset):
    """The trainers get --recipe (none: their default, official) and every generation, LoRAs or not, that recipe's
    preset; --generate-args may pick another."""
    from smrabooth.sampling import PRESETS

    jobs = plan(ReproduceConfig(**{**settings(dataset), "recipe": recipe}))
    videos = [j for j in jobs if j.kind == "generate"]
    assert videos and all(j.spec["argv"][j.spec["argv"].index("--preset") + 1] == preset for j in videos)
    assert all(j.spec["config"]["shift"] == PRESETS[preset]["shift"] and j.spec["config"]["subject_scale"]
               == PRESETS[preset]["subject_scale"] for j in videos)
    trained = [j for j in jobs if j.stage == "train"]
    assert all(("--recipe" in j.spec["argv"]) == (recipe is not None) for j in trained)
    chosen = plan(ReproduceConfig(**{**settings(dataset), "recipe": recipe, "generate_args": "--preset paper"}))
    assert all(j.spec["config"]["shift"] == PRESETS["paper"]["shift"] for j in chosen if j.kind == "generate")


def test_bad_settings_are_one_line_errors(dataset):
    base = settings(dataset)
    with pytest.raises(SmraboothError, match="unknown dreambooth; choose from wan"):
        plan(ReproduceConfig(**{**base, "methods": ("dreambooth",)}))
    with pytest.raises(SmraboothError, match=r"train-subject .*unrecognized arguments: --no-such-flag"):
        plan(ReproduceConfig(**{**base, "subject_args": "--no-such-flag"}))
    with pytest.raises(SmraboothError, match="--shard '2/2'"):
        parse_shard("2/2")


def test_split_by_cost_is_longest_first_to_the_least_loaded():
    jobs = [Job("generate", n, {}, seconds=s) for n, s in zip("abcde", (3, 5, 1, 4, 3))]
    bins = split_by_cost(jobs, 2)
    # 5 -> 0; 4 -> 1; 3 (a) -> 1 (4 < 5); 3 (e) -> 0 (5 < 7); 1 -> 1 (7 < 8)
    assert [[j.name for j in b] for b in bins] == [["b", "e"], ["d", "a", "c"]]


def test_shards_partition_every_stage(dataset):
    jobs = plan(ReproduceConfig(**settings(dataset)))
    shards = [shard_jobs(jobs, (i, 3)) for i in range(3)]
    names = [j.name for s in shards for j in s]
    assert sorted(names) == sorted(j.name for j in jobs)
    for s in shards:  # each shard has a share of each stage, so they run side by side
        assert {j.stage for j in s} == {"train", "generate", "evaluate"}


def _run(args, env, **kw):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "smrabooth",
           "reproduce", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_two_workers_killed_mid_plan_resume_and_write_complete_tables(dataset):
    s = settings(dataset, "killed")
    out = Path(s["out"])
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    first = _run(cli_args(s), env)
    deadline = time.time() + 240
    while not list(out.glob("loras/dit/*/*.done.json")):  # kill once some LoRA is finished, before the videos
        assert first.poll() is None, first.stdout.read()
        assert time.time() < deadline, "no job finished"
        time.sleep(0.1)
    # a worker dies (as from the out-of-memory killer): the launcher stops the other one and fails
    workers = Path(f"/proc/{first.pid}/task/{first.pid}/children").read_text().split()
    os.kill(int(workers[0]), signal.SIGKILL)
    assert first.wait(timeout=120) != 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.done.json")}
    assert before and not (out / "tables").exists()

    second = _run(cli_args(s), env)
    log = second.communicate(timeout=300)[0]
    assert second.returncode == 0, log
    jobs = plan(ReproduceConfig(**s))
    # what was done before the kill is skipped (not rerun, marker untouched); everything else ran once
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    ran = re.findall(r"\[\d+/\d+\] \w+ (\S+) in [\d.]+s", log)
    assert sorted(ran) == sorted(j.name for j in jobs if marker_path(out, j) not in before)
    assert "plan ETA" in log
    done, _ = scan(out, jobs)
    assert set(done) == {j.name for j in jobs}
    table = (out / "tables" / "table1" / "table.md").read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith(("| wan ", "| no_mora "))]
    assert len(rows) == 1 and "| wan | 4 |" in rows[0]  # no_mora is an ablation row only
    ablation = (out / "tables" / "ablation" / "table.md").read_text()
    assert "| no_mora | 4 |" in ablation and " - " not in ablation  # every metric has a value
    for table in ("table1", "ablation"):
        assert (out / "tables" / table / "report.html").is_file() and (out / "tables" / table / "table.csv").is_file()

    # content-checked: a changed video is remade (and rescored); a changed LoRA remakes all its videos
    video = next(j for j in jobs if j.kind == "generate" and j.spec["method"] == "wan")
    with open(out / video.name, "ab") as f:
        f.write(b"\0")
    lora = out / "loras/dit/subject/ball-sura/subject_lora.safetensors"
    lora.write_bytes(lora.read_bytes()[:-1] + b"\1")
    done, _ = scan(out, jobs)
    todo = {j.name for j in jobs} - set(done)
    ball = {j.name for j in jobs if "no_mora/" in j.name and "-ball-" in j.name}  # its videos and their scores
    assert todo == {video.name, video.name.replace("videos/", "scores/").replace(".mp4", ".json"),
                    "loras/dit/subject/ball-sura"} | ball
    text = dry_run_text(out, jobs, gpus=2)
    assert f"total        {len(jobs)} jobs,     {len(todo)} to do" in text


def test_jobs_carry_the_settings_their_command_resolves_and_run_them(dataset, tmp_path):
    """Each job holds its command's resolved settings (trainer config, GenerateConfig, evaluation settings) and the
    runner runs those, re-parsing no argv: a generate job whose carried config says 9 frames writes 9 frames though
    its argv says 5."""
    import dataclasses

    from smrabooth.cli import build_parser
    from smrabooth.cli.train import resolve_train_config
    from smrabooth.reproduce import Runner, Worker
    from smrabooth.sampling import GenerateConfig
    from smrabooth.video import read_video

    cfg = ReproduceConfig(**settings(dataset, out=str(tmp_path / "exp")))
    jobs = plan(cfg)
    motion = next(j for j in jobs if j.kind == "motion")
    by_hand = resolve_train_config("motion", build_parser().parse_args(
        [motion.spec["command"], *motion.spec["argv"], "--out", "x"]))
    assert motion.extra["config"] == dataclasses.replace(by_hand, out=None)
    assert motion.extra["config"].steps == 2 and motion.extra["config"].use_mora is False
    assert motion.spec["config"]["recipe"] == "paper"  # the resolved settings are part of the job's digest
    generate = next(j for j in jobs if j.kind == "generate" and not j.needs)
    assert isinstance(generate.extra["config"], GenerateConfig) and generate.extra["config"].frames == 5
    assert next(j for j in jobs if j.kind == "evaluate").extra["settings"].header()

    generate.extra["config"] = dataclasses.replace(generate.extra["config"], frames=9)
    Runner(cfg, tmp_path / "exp", Worker(), log=lambda *a: None).run(generate, "digest", {})
    assert len(read_video(tmp_path / "exp" / generate.name).frames) == 9


def test_a_job_run_again_never_deletes_what_the_user_put_in_its_run_folder(dataset, tmp_path, capsys):
    """A training job whose inputs changed runs again with --overwrite: its run folder is replaced only while it
    holds nothing but what the trainer wrote."""
    from smrabooth.reproduce import Runner, Worker

    cfg = ReproduceConfig(**settings(dataset, out=str(tmp_path / "exp")))
    motion = next(j for j in plan(cfg) if j.kind == "motion")
    runner = Runner(cfg, tmp_path / "exp", Worker(), log=lambda *a: None)
    runner.run(motion, "first", {})
    run = tmp_path / "exp" / motion.name
    (run / "notes.txt").write_text("mine")
    with pytest.raises(SmraboothError, match=f"job {motion.name} failed"):
        runner.run(motion, "second", {})  # another digest: the job starts over
    assert "holds notes.txt, which smrabooth train-motion did not write" in capsys.readouterr().err
    assert (run / "notes.txt").read_text() == "mine" and (run / "motion_lora.safetensors").is_file()
    (run / "notes.txt").unlink()
    runner.run(motion, "second", {})
    assert (run / "motion_lora.safetensors").is_file()
