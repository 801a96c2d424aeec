"""SMRA-Sprites scoring, experiment cases/variants, `smrabooth demo` and `smrabooth bench sprites` with a
random-weight tiny bundle on the CPU."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from smrabooth.cli import main
from smrabooth.errors import SmraboothError
from smrabooth_sprites import (
    COLORS,
    HELDOUT_SUBJECTS,
    SpriteDesign,
    render_clip,
    sample_family_clips,
    write_motion_folder,
    write_subject_folder,
)
from smrabooth_sprites.experiment import (
    VARIANTS,
    Case,
    mora_window,
    parse_subjects,
    parse_variants,
)
from smrabooth_sprites.scoring import (
    SpriteScorer,
    background_scores,
    fill_missing,
    foreground_colour_similarity,
    load_reference,
)

FRAMES = 9  # the tiny preset's clips


def cli(*argv) -> int:
    return main([str(a) for a in argv])


FAST = ["--subject-steps", "1", "--motion-steps", "1", "--gen-steps", "1", "--no-motion-fidelity", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory):
    """One latent/flow cache for the module: the demo and the bench encode the same stills and clips."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SMRABOOTH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from smrabooth_sprites.bundle import build_sprites_models, save_bundle

    return save_bundle(build_sprites_models("tiny"), tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="module")
def models(bundle):
    from smrabooth_sprites.bundle import load_bundle

    return load_bundle(bundle)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Heart subject (4 stills) + 1 spiral clip of another sprite, scored on a blue background."""
    root = tmp_path_factory.mktemp("ref")
    write_subject_folder(root / "subject", HELDOUT_SUBJECTS[0], 4, seed=0, size=128)
    clips = sample_family_clips("spiral", 1, seed=0, frames=FRAMES)
    write_motion_folder(root / "motion", clips, frames=FRAMES)
    return load_reference(root / "subject", root / "motion", "blue"), clips[0]


def truth_clip(reference):
    ref, clip = reference
    return render_clip(ref.design, clip.motion, "blue", frames=FRAMES)


# ------------------------------------------------------------------------------------------- scoring
def test_pixel_measures_separate_right_from_wrong(reference):
    ref, clip = reference
    good = truth_clip(reference).frames
    other = render_clip(HELDOUT_SUBJECTS[1], clip.motion, "green", frames=FRAMES).frames  # blue star, yellow dots
    assert foreground_colour_similarity(good, ref.images, ref.masks) > 0.9
    assert foreground_colour_similarity(other, ref.images, ref.masks) < 0.2
    # a clip of the subject itself, cut from its reference stills, is identical in colour
    assert foreground_colour_similarity(ref.images, ref.images, ref.masks) == pytest.approx(1.0)
    assert background_scores(good, "blue") == {"bg_ok": 1.0, "bg_dist": 0.0, "bg_detected": "blue"}
    wrong = background_scores(other, "blue")
    assert wrong["bg_ok"] == 0.0 and wrong["bg_detected"] == "green"
    assert wrong["bg_dist"] == pytest.approx(np.linalg.norm(np.subtract(COLORS["green"], COLORS["blue"])))


def test_missing_positions_are_filled_or_give_up():
    p = np.array([[0, 0], [np.nan, np.nan], [2, 4]], float)
    assert fill_missing(p).tolist() == [[0, 0], [1, 2], [2, 4]]
    assert fill_missing(np.full((3, 2), np.nan)) is None


def test_scorer_truth_near_perfect_wrong_clip_lower(reference, models):
    ref, _ = reference
    scorer = SpriteScorer(models.dinov2, models.searaft, with_motion_fidelity=False)
    good = scorer.score(truth_clip(reference).frames, ref)
    # other design, other motion family, other background
    left = sample_family_clips("left", 1, seed=3, frames=FRAMES)[0].motion
    bad = scorer.score(render_clip(SpriteDesign("square", "yellow", "solid", "yellow"), left, "red",
                                   frames=FRAMES).frames, ref)
    assert good["fg_color"] > 0.9 and bad["fg_color"] < 0.2
    assert good["traj"] > 0.97 and bad["traj"] < 0.6
    assert good["family_ok"] == 1.0 and good["family_detected"] == "spiral"
    assert bad["family_ok"] == 0.0
    assert good["bg_ok"] == 1.0 and good["bg_dist"] == 0.0 and bad["bg_ok"] == 0.0 and bad["bg_dist"] > 100
    assert good["motion_fidelity"] is None  # switched off
    # random-weight encoder: only ranges and identities
    assert -1 <= bad["dino_i"] <= good["dino_i"] + 0.2 <= 1.2
    assert 0.9 < good["temporal"] <= 1.0 + 1e-6
    same = scorer.features(ref.images)
    assert float((same * same).sum(-1).min()) == pytest.approx(1.0, abs=1e-5)
    # one still: the subject's own photo scores as its frames do, another design low
    still = scorer.score_still(ref.images[0], ref)
    assert set(still) == {"dino_i", "fg_color"} and still["fg_color"] > 0.9
    assert still["dino_i"] == pytest.approx(float((scorer.features(ref.images) @ same[0]).mean()), abs=1e-5)
    assert scorer.score_still(truth_clip(reference).frames[0], ref)["fg_color"] > 0.9
    wrong = render_clip(SpriteDesign("square", "yellow", "solid", "yellow"), left, "red", frames=FRAMES).frames[0]
    assert scorer.score_still(wrong, ref)["fg_color"] < 0.2
    with pytest.raises(SmraboothError, match="uint8 \\(H, W, 3\\)"):
        scorer.score_still(truth_clip(reference).frames, ref)


def test_motion_fidelity_of_identical_motion_is_100(reference, models):
    """The reference clip against itself (3 frames, to keep SEA-RAFT on the CPU short): identical tracks."""
    ref, _ = reference
    short = dataclasses.replace(ref, motion_frames=[ref.motion_frames[0][:3]], motion_masks=[ref.motion_masks[0][:3]],
                                motion_positions=[ref.motion_positions[0][:3]], cache={})
    scorer = SpriteScorer(models.dinov2, models.searaft, grid=8)
    score = scorer.motion_fidelity(short.motion_frames[0], short, short.motion_masks[0][0])
    assert score == pytest.approx(100, abs=1e-6)
    assert "tracks" in short.cache  # reference tracks are computed once per reference


def test_scorer_rejects_bad_clips(reference, models):
    with pytest.raises(SmraboothError, match="uint8"):
        SpriteScorer(models.dinov2, models.searaft).score(np.zeros((4, 8, 8, 3), np.float32), reference[0])


# ------------------------------------------------------------------------------------------ experiment
def test_variants_cases_and_settings():
    assert [v.name for v in parse_variants("full,base")] == ["full", "base"]
    with pytest.raises(SmraboothError, match="unknown variant"):
        parse_variants("full,fancy")
    assert {"tpoint_5", "tpoint_45", "early_0.1", "early_0.8", "dense", "no_sura", "no_mora"} <= set(VARIANTS)
    assert parse_subjects("2") == [0, 1] and parse_subjects("star,0") == [1, 0]
    with pytest.raises(SmraboothError):
        parse_subjects("dragon")
    case = Case(0, "spiral", "blue")
    assert case.prompt == "a V* heart doing S* on a blue background" and case.name == "heart-spiral-blue"
    with pytest.raises(SmraboothError, match="background"):
        Case(0, "spiral", "red")  # the heart is red
    with pytest.raises(SmraboothError, match="held-out"):
        Case(0, "left", "blue")
    assert mora_window(17) == (4, 5, 1) and mora_window(9) == (3, 1, 1)


def test_layer_location_variants_put_one_lora_on_every_layer_type(models):
    """subject_all_layers / motion_all_layers: that LoRA on all six layer types, the other one where the
    paper puts it, with the paper's timing (the other half of what dense changes)."""
    from conftest import make_random_lora

    from smrabooth.sampling import attach_loras, detach_loras
    from smrabooth_sprites.experiment import ExperimentSettings, generation_config

    settings, case = ExperimentSettings(), Case(0, "spiral", "blue")
    transformer = models.pipe.transformer
    subject, motion = make_random_lora(transformer, seed=1), make_random_lora(transformer, seed=2)

    def adapters_on(variant: str) -> dict[str, set[str]]:
        config = generation_config(settings, case, VARIANTS[variant], seed=0)
        assert (config.injection, config.reference_t_point, config.subject_scale_early) == ("sparse", 15, 0.5)
        layers = attach_loras(models.pipe, config, subject, motion)
        try:
            names = {n: m for n, m in transformer.named_modules() if m in layers}
            return {a: {n.split(".", 2)[2] for n, m in names.items() if a in m.lora_A} for a in ("subject", "motion")}
        finally:
            detach_loras(models.pipe)

    full, subject_all, motion_all = (adapters_on(v) for v in ("full", "subject_all_layers", "motion_all_layers"))
    assert full["subject"] == {"attn1.to_q", "attn2.to_q", "attn1.to_k", "attn2.to_k", "ffn.net.0.proj"}
    assert "attn1.to_v" in full["motion"] and "attn1.to_q" not in full["motion"]
    every = {"attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
             "attn2.to_v", "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2"}
    assert subject_all == {"subject": every, "motion": full["motion"]}
    assert motion_all == {"subject": full["subject"], "motion": every}


def test_t_point_is_mapped_by_noise_level():
    from smrabooth.schedules import shifted_linear_sigmas, t_point_for_sigmas

    paper = shifted_linear_sigmas(50, 5.0)
    assert [t_point_for_sigmas(paper, t) for t in (5, 15, 25, 45)] == [5, 15, 25, 45]  # the paper's own schedule
    ours = shifted_linear_sigmas(10, 3.0)
    steps = [t_point_for_sigmas(ours, t) for t in (5, 15, 25, 45)]
    assert steps == sorted(steps) and steps[0] < steps[-1] <= 9
    with pytest.raises(SmraboothError):
        t_point_for_sigmas(ours, 50)


# ------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def demo(bundle, tmp_path_factory):
    """One `smrabooth demo` run (1 training step each, 1 sampling step), shared by the tests below."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("demo") / "demo"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli("demo", "--model", bundle, "--out", out, *FAST)
    return out, code, stdout.getvalue()


def test_demo_writes_every_file(demo, bundle, capsys):
    out, code, printed = demo
    assert code == 0
    assert str(out.resolve()) in printed and "fg_color" in printed
    for name in ("subject_lora.safetensors", "motion_lora.safetensors", "result.mp4", "result.gif", "baseline.mp4",
                 "baseline.gif", "reference_motion.gif", "report.html", "metrics.json"):
        assert (out / name).is_file(), name
    page = (out / "report.html").read_text()
    for text in ("foreground colour", "trajectory similarity", "background colour correct", "temporal consistency",
                 "data:image/gif;base64", "data:image/png;base64", "a V* heart doing S* on a blue background"):
        assert text in page, text
    from PIL import Image

    from smrabooth.lora.files import load_lora
    from smrabooth.video import read_video

    assert Image.open(out / "result.gif").n_frames == FRAMES
    # frames.png: reference motion, result, baseline; 6 frames each
    assert np.array(Image.open(out / "frames.png")).shape == (3 * 128, 6 * 128, 3)
    from smrabooth.video import frame_strip

    videos = [np.broadcast_to(np.arange(17, dtype=np.uint8)[:, None, None, None] + 40 * k, (17, 2, 3, 3))
              for k in range(3)]
    strip = frame_strip(videos)
    assert strip.shape == (6, 18, 3)
    assert strip[::2, ::3, 0].tolist() == [[0, 3, 6, 10, 13, 16], [40, 43, 46, 50, 53, 56], [80, 83, 86, 90, 93, 96]]
    assert len(read_video(out / "result.mp4").frames) == FRAMES
    assert load_lora(out / "subject_lora.safetensors").modules and load_lora(out / "motion_lora.safetensors").modules
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["result"]["variant"] == "full" and metrics["baseline"]["variant"] == "base"
    assert metrics["result"]["seed"] == metrics["baseline"]["seed"]
    assert metrics["settings"]["frames"] == FRAMES and metrics["mora_window"] == {"window": 3, "drop": 1, "stride": 1}
    # a second run into the same folder is refused, unless --overwrite
    assert cli("demo", "--model", bundle, "--out", out, *FAST) == 2
    assert "previous run" in capsys.readouterr().err


def test_bench_writes_table_and_reuses_loras(demo, bundle, tmp_path, capsys, monkeypatch):
    import shutil

    out = tmp_path / "bench"
    demo_settings = ["--subject-layers", "q,k,ffn.0", "--mora-reference", "decoded", "--mora-max-sigma", "0.2"]
    args = ["bench", "sprites", "--model", bundle, "--out", out, "--subjects", "heart", "--motions", "spiral",
            "--seeds", "1", *FAST, *demo_settings, "--gen-steps", "6"]  # enough steps for T_point 15 and 45 to differ
    assert cli(*args, "--variants", "base") == 0  # needs no LoRA
    assert "base" in capsys.readouterr().out
    for name in ("results.json", "results.csv", "table.md"):
        assert (out / name).is_file()
    table = (out / "table.md").read_text()
    assert "| variant | n | dino_i | fg_color | traj |" in table and "| base | 1 |" in table
    # the second table: the subject LoRA alone in a still (here none: base uses no LoRA)
    assert "| subject LoRA | n | dino_i | fg_color |" in table and "| no LoRA | 1 |" in table
    first = json.loads((out / "results.json").read_text())["still_rows"]
    assert [(r["lora"], r["seed"]) for r in first] == [("no LoRA", 0)] and Path(first[0]["image"]).is_file()
    # the demo trained the same case's LoRAs with the same settings: put them in the bench's cache
    loras = out / "cases" / "heart-spiral-blue" / "loras"
    shutil.copytree(demo[0] / "work" / "cases" / "heart-spiral-blue" / "loras", loras)
    stamp = (loras / "subject_sura" / "subject_lora.safetensors").stat().st_mtime_ns
    assert cli(*args, "--variants", "full,dense,tpoint_45,early_0.1", "--resume") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["trained"]["heart-spiral-blue"] == []  # nothing retrained
    assert (loras / "subject_sura" / "subject_lora.safetensors").stat().st_mtime_ns == stamp
    assert [r["variant"] for r in results["rows"]] == ["full", "dense", "tpoint_45", "early_0.1"]
    # stills: the SuRA LoRA's is new, the no-LoRA one is kept from the first call
    assert [r["lora"] for r in results["still_rows"]] == ["SuRA", "no LoRA"] and results["still_rows"][1] == first[0]
    assert set(results["still_summary"]) == {"SuRA", "no LoRA"}
    t_points = {r["variant"]: r["t_point"] for r in results["rows"]}
    assert t_points["full"] == t_points["early_0.1"] != t_points["tpoint_45"]
    with open(out / "results.csv") as f:
        assert len(f.read().strip().splitlines()) == 5
    # a later call with the same settings keeps what is scored (a long table is finished over several calls)
    import smrabooth.sampling

    monkeypatch.setattr(smrabooth.sampling, "generate", lambda *a, **k: pytest.fail("generated again"))
    assert cli(*args, "--variants", "dense,full", "--resume") == 0
    again = json.loads((out / "results.json").read_text())
    assert again["rows"] == [next(r for r in results["rows"] if r["variant"] == v) for v in ("dense", "full")]
    assert again["still_rows"] == results["still_rows"]
    # a variant that needs a LoRA not in the cache trains it (and only it)
    # (covered by the demo, which trains subject_sura and motion_mora from nothing)
    # LoRAs trained with other settings are not reused: the bench's own defaults train the subject LoRA elsewhere
    monkeypatch.undo()  # generating is allowed again
    other = [a for a in args if a not in demo_settings]
    assert cli(*other, "--variants", "subject_only", "--resume", "--no-subject-stills") == 0
    assert "trained with other settings" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["trained"]["heart-spiral-blue"] == ["subject_sura"]


def test_bad_inputs_are_clear_errors(bundle, tmp_path, capsys):
    def err(*argv):
        assert cli(*argv) == 2
        return capsys.readouterr().err

    assert "not a folder" in err("demo", "--model", tmp_path / "nowhere", "--out", tmp_path / "d")
    (tmp_path / "empty").mkdir()
    assert "model_index.json" in err("demo", "--model", tmp_path / "empty", "--out", tmp_path / "d")
    import shutil

    shutil.copytree(bundle, tmp_path / "half")
    shutil.rmtree(tmp_path / "half" / "searaft")
    assert "no searaft/" in err("demo", "--model", tmp_path / "half", "--out", tmp_path / "d")
    assert not (tmp_path / "d").exists()  # nothing written before the bundle was checked
    assert "unknown variant" in err("bench", "sprites", "--model", bundle, "--out", tmp_path / "b", "--variants",
                                    "full,magic")
    assert "held-out" in err("bench", "sprites", "--model", bundle, "--out", tmp_path / "b", "--motions", "left")
    assert "no cases" in err("bench", "sprites", "--model", bundle, "--out", tmp_path / "b", "--subjects", ",")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    assert "not a smrabooth demo or bench run" in err("bench", "sprites", "--model", bundle, "--out", tmp_path / "full",
                                                      "--variants", "base")
    # --overwrite replaces a previous run, never a folder of other files
    assert "refusing to delete" in err("bench", "sprites", "--model", bundle, "--out", tmp_path / "full",
                                       "--variants", "base", "--overwrite")
    assert (tmp_path / "full" / "x.txt").read_text() == "x"


def test_bench_jobs_runs_cases_in_processes_and_merges_them(bundle, tmp_path):
    """--jobs: one process per case; the merged table is the serial run's, row for row."""
    args = ["bench", "sprites", "--model", bundle, "--subjects", "heart", "--motions", "spiral,figure-eight",
            "--seeds", "1", "--variants", "base", *FAST]
    assert cli(*args, "--out", tmp_path / "serial") == 0
    assert cli(*args, "--out", tmp_path / "jobs", "--jobs", "2") == 0
    serial, jobs = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("serial", "jobs"))
    for rows in (serial["rows"], jobs["rows"]):
        for r in rows:
            r.pop("video"), r.pop("gen_seconds")
    assert [r["case"] for r in jobs["rows"]] == ["heart-spiral-blue", "heart-figure-eight-blue"]
    assert jobs["rows"] == serial["rows"] and jobs["summary"] == serial["summary"]
    assert (tmp_path / "jobs" / "parts" / "heart-spiral-blue" / "log.txt").is_file()
    assert (tmp_path / "jobs" / "cases" / "heart-figure-eight-blue" / "videos" / "base_s0.mp4").is_file()


def test_paired_wins_count_each_case_and_seed_against_base():
    from smrabooth_sprites.report import paired_wins, wins_table

    def row(case, seed, variant, traj, bg_dist, fg=None):
        return {"case": case, "seed": seed, "variant": variant, "traj": traj, "bg_dist": bg_dist, "fg_color": fg}

    rows = [row("a", 0, "base", 0.3, 5.0, 0.1), row("a", 0, "full", 0.5, 6.0, 0.1),  # traj win, bg loss, fg tie
            row("a", 1, "base", 0.4, 5.0, 0.2), row("a", 1, "full", 0.2, 4.0, None),  # traj loss, bg win, fg unknown
            row("b", 0, "full", 0.9, 1.0, 0.9)]  # no base for this case: not counted
    wins = paired_wins(rows, ["traj", "bg_dist", "fg_color"])
    assert wins == {"full": {"traj": [1, 0, 1], "bg_dist": [1, 0, 1], "fg_color": [0, 1, 0]}}
    assert "| full | 1/0/1 | 1/0/1 | 0/1/0 |" in wins_table(wins, ["traj", "bg_dist", "fg_color"])
