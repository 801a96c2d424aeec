"""The web app's handlers, job queue and command, without a browser (tests/test_ui_browser.py drives the pages)."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from smrabooth.errors import SmraboothError
from smrabooth.recipes import DEFAULT_RECIPE
from smrabooth_ui import handlers as h
from smrabooth_ui.cli import host_warning, parse_auth
from smrabooth_ui.jobs import JobQueue, error_line
from smrabooth_ui.profile import resolve_profile
from smrabooth_ui.tasks import flow_to_rgb
from smrabooth_ui.workdir import Workdir, safe_file_name, safe_name


# ------------------------------------------------------------------------------ fake jobs (run in the worker)
def sleepy_runner(job, profile, workdir):
    if job["params"].get("fail"):
        raise SmraboothError(f"{job['params']['fail']} is broken: fix it")
    if job["params"].get("crash"):
        raise ZeroDivisionError("division by zero")
    (Path(workdir) / f"started-{job['title']}").write_text(str(time.time()))
    time.sleep(job["params"].get("sleep", 0))
    (Path(workdir) / f"ended-{job['title']}").write_text(str(time.time()))
    return {"title": job["title"]}


def test_safe_names_and_nothing_escapes_the_workdir(tmp_path):
    assert safe_name("My dog!") == "My_dog" and safe_name("../../etc") == "etc" and safe_name("a/b\\c") == "a_b_c"
    with pytest.raises(SmraboothError, match="no letters or digits"):
        safe_name("../..")
    assert safe_file_name("../../x/Photo 1.JPG") == "Photo_1.jpg" and safe_file_name(".bashrc", 3) == "bashrc"
    wd = Workdir(tmp_path / "w")
    assert wd.subject("../../evil") == wd.root / "subjects" / "evil"
    with pytest.raises(SmraboothError, match="outside the work folder"):
        wd.inside("../outside.txt")
    with pytest.raises(SmraboothError, match="outside the work folder"):
        wd.inside("/etc/passwd")
    assert wd.inside("videos/a.mp4") == wd.root / "videos" / "a.mp4"
    src = tmp_path / "..evil name;rm -rf.png"
    src.write_bytes(b"x")
    saved = wd.save_uploads([str(src)], wd.root / "subjects" / "d" / "uploads")
    assert [p.name for p in saved] == ["evil_name_rm_-rf.png"]
    assert saved[0].parent == wd.root / "subjects" / "d" / "uploads"


def test_flow_colours_follow_the_wheel():
    """Right = red, left = cyan, no motion = white, half the largest speed = half saturated."""
    flow = np.zeros((2, 1, 4), np.float32)
    flow[0, 0] = [2.0, -2.0, 0.0, 1.0]  # u: right, left, still, right at half speed
    rgb = flow_to_rgb(flow)[0]
    assert rgb[0].tolist() == [255, 0, 0] and rgb[1].tolist() == [0, 255, 255] and rgb[2].tolist() == [255, 255, 255]
    assert rgb[3].tolist() == [255, 128, 128]


def test_loss_plot_gets_new_data_first_then_the_colours_of_new_terms():
    """Gradio's plot draws its chart again on a changed color_map, from the data it holds then: the data of
    new terms must arrive one refresh before their colours, or their lines have no stroke."""
    pytest.importorskip("gradio")
    from smrabooth_ui.app import PALETTE, TERM_COLOURS, loss_plot_step

    rows = [{"step": 1, "term": "flow", "value": 0.9}, {"step": 1, "term": "sura", "value": 0.4}]
    fields, sent = loss_plot_step(None, rows)
    assert set(fields) == {"value"} and fields["value"]["term"].tolist() == ["flow", "sura"]
    fields, sent = loss_plot_step(sent, rows)
    assert fields == {"color_map": {"flow": TERM_COLOURS["flow"], "sura": TERM_COLOURS["sura"]}}
    assert loss_plot_step(sent, rows) == (None, sent)  # nothing new: nothing sent
    more = rows + [{"step": 2, "term": "flow", "value": 0.8}, {"step": 2, "term": "sura", "value": 0.3}]
    fields, sent = loss_plot_step(sent, more)
    assert set(fields) == {"value"} and len(fields["value"]) == 4
    assert loss_plot_step(sent, more)[0] is None  # same terms: the colours stand
    odd = more + [{"step": 2, "term": "debiased", "value": 0.1}, {"step": 2, "term": "other", "value": 0.2}]
    fields, sent = loss_plot_step(sent, odd)
    assert set(fields) == {"value"}
    fields, _ = loss_plot_step(sent, odd)
    assert fields["color_map"]["debiased"] == TERM_COLOURS["debiased"] and fields["color_map"]["other"] == PALETTE[0]


def test_queue_runs_jobs_one_at_a_time_in_order_and_reports_the_cli_error_line(tmp_path):
    q = JobQueue(tmp_path, {}, runner=sleepy_runner)
    try:
        a = q.submit("generate", "a", {"sleep": 0.5})
        b = q.submit("generate", "b", {})
        c = q.submit("train_subject", "c", {"fail": "photo.png"})
        d = q.submit("evaluate", "d", {"crash": True})
        for job in (a, b, c, d):
            q.wait(job["id"], timeout=120)
        assert q.get(a["id"])["status"] == "done" and q.get(a["id"])["result"] == {"title": "a"}
        # one at a time: b started after a ended
        assert float((tmp_path / "started-b").read_text()) >= float((tmp_path / "ended-a").read_text())
        assert q.get(c["id"])["error"] == "smrabooth train-subject: error: photo.png is broken: fix it"
        assert q.get(d["id"])["status"] == "failed" and "ZeroDivisionError" in q.get(d["id"])["error"]
        assert "Traceback" in q.log_tail(d["id"])
    finally:
        q.stop()


def test_cancel_a_running_job_and_restart_marks_a_running_job_interrupted(tmp_path):
    q = JobQueue(tmp_path, {}, runner=sleepy_runner)
    try:
        long = q.submit("train_subject", "long", {"sleep": 60})
        queued = q.submit("generate", "queued", {})
        end = time.time() + 60
        while q.get(long["id"])["status"] != "running" or not (tmp_path / "started-long").exists():
            assert time.time() < end
            time.sleep(0.1)
        q.cancel(long["id"])
        assert q.wait(long["id"], 30)["status"] == "cancelled"
        assert q.wait(queued["id"], 60)["status"] == "done"  # the queue goes on with a fresh worker
        assert not (tmp_path / "ended-long").exists()
    finally:
        q.stop()
    # a job left "running" by an app that stopped is interrupted at the next start, never run again
    stuck = json.loads(q.path(long["id"]).read_text())
    stuck["status"] = "running"
    q.path(long["id"]).write_text(json.dumps(stuck))
    q2 = JobQueue(tmp_path, {}, runner=sleepy_runner, start=False)
    assert q2.get(long["id"])["status"] == "interrupted" and "Resume" in q2.get(long["id"])["error"]


def test_error_line_is_the_clis():
    from smrabooth.cli import main  # the CLI's own format, for the same exception

    assert error_line("train_motion", SmraboothError("x")) == "smrabooth train-motion: error: x"
    assert error_line("prepare_subject", SmraboothError("x")) == "smrabooth prepare-subject: error: x"
    assert main(["generate", "--model", "nowhere/", "--prompt", "p", "--out", "o.mp4"]) == 2


# ------------------------------------------------------------------------------------- handlers (no jobs run)
@pytest.fixture(scope="module")
def sprites_profile():
    return resolve_profile(None, "cpu")


@pytest.fixture
def app(tmp_path, sprites_profile):
    a = h.UiApp(tmp_path / "work", sprites_profile, start_jobs=False)
    yield a
    a.close()


def test_a_text_file_as_a_photo_is_refused_before_anything_is_kept(app, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    with pytest.raises(SmraboothError, match="notes.png is not a readable image"):
        h.add_subject_photos(app, "dog", [str(bad)])
    with pytest.raises(SmraboothError, match="notes.txt is not an image file"):
        h.add_subject_photos(app, "dog", [str(bad.with_name("notes.txt"))])
    assert not (app.wd.subject("dog") / "uploads").exists()


def test_subject_upload_prepare_remove_and_queue_training(app):
    ex = app.examples
    h.add_subject_photos(app, "heart", ex.subject_images, ex.subject_masks)
    assert h.prepare_subject_data(app, "heart", h.MASK_SOURCES[0]) == "prepared 4 photo(s) of heart: check the " \
        "contact sheet"
    sheet = app.wd.subject("heart") / "data" / "contact_sheet.png"
    assert sheet.is_file() and len(list((sheet.parent / "masks").iterdir())) == 4
    photos = h.remove_subject_photo(app, "heart", "0001.png")
    assert [Path(p).name for p in photos] == ["0000.png", "0002.png", "0003.png"]
    assert not (app.wd.subject("heart") / "masks" / "0001.png").exists()
    h.prepare_subject_data(app, "heart", h.MASK_SOURCES[2])  # no masks: the whole image
    assert not (app.wd.subject("heart") / "data" / "masks").exists()
    with pytest.raises(SmraboothError, match="steps must be positive"):
        h.train_subject(app, "heart", 0, 4, 1e-4)
    with pytest.raises(SmraboothError, match="nothing to resume"):
        h.train_subject(app, "heart", 3, 4, 1e-4, resume=True)
    job = h.train_subject(app, "heart", 3, 4, 1e-4)
    assert job["status"] == "queued" and job["params"]["use_mask"] is False
    assert Path(job["params"]["out"]).parent == app.wd.runs("subject")
    with pytest.raises(SmraboothError, match="already queued"):
        h.train_subject(app, "heart", 3, 4, 1e-4)
    assert h.train_view(app, "train_subject").status == f"queued: train subject heart ({DEFAULT_RECIPE}, 3 steps)"


def test_train_view_reads_progress_and_losses_from_the_run_folder(app):
    job = app.queue.submit("train_motion", "train motion m (4 steps)",
                           {"out": str(app.wd.runs("motion") / "m-1"), "steps": 4})
    run = app.wd.runs("motion") / "m-1"
    (run / "validation").mkdir(parents=True)
    (run / "log.jsonl").write_text("".join(json.dumps({"step": s, "flow": 1.0 / s, "mora": 0.5, "loss": 9.0,
                                                       "lr": 1e-4, "seconds": s}) + "\n" for s in (1, 2, 3)))
    for s in (2, 10):
        (run / "validation" / f"step-{s}.mp4").write_bytes(b"")
    app.queue._update(job["id"], status="running")
    v = h.train_view(app, "train_motion")
    assert v.progress == 0.75 and v.status == "running: train motion m (4 steps) (75%)"
    assert {(r["step"], r["term"]) for r in v.losses} == {(s, t) for s in (1, 2, 3) for t in ("flow", "mora")}
    assert v.validation.endswith("step-10.mp4")


def test_the_mask_tool_is_a_queued_job_with_the_clis_masks(tmp_path, sprites_profile):
    """GroundingDINO + SAM (tiny random-weight ones) run in the job worker, not in the app; the masks are
    those of prepare-subject's segmenter run here on the same photos."""
    from dataclasses import replace

    from PIL import Image
    from tiny_segment_models import tiny_grounding_dino, tiny_sam

    from smrabooth.data.masks import MaskSettings
    from smrabooth.data.prepare_subject import prepare_subject
    from smrabooth.data.segment import GroundingDinoDetector, SamSegmenter, TextPromptedSegmenter

    for name, (model, processor) in {"gd": tiny_grounding_dino(), "sam": tiny_sam()}.items():
        model.save_pretrained(tmp_path / name)
        processor.save_pretrained(tmp_path / name)
    profile = replace(sprites_profile, detector=str(tmp_path / "gd"), sam=str(tmp_path / "sam"))
    rng = np.random.default_rng(0)
    photos = []
    for i in range(3):  # not square: the tiny detector's smallest feature map must be wider than 1x1
        photos.append(tmp_path / "photos" / f"dog{i}.png")
        photos[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(photos[-1])
    app = h.UiApp(tmp_path / "work", profile, start_jobs=False)
    try:
        h.add_subject_photos(app, "dog", photos)
        line = h.prepare_subject_data(app, "dog", h.MASK_SOURCES[1], "a dog")
        assert line.startswith("queued: masks of dog by the mask tool ('a dog')")
        data = app.wd.subject("dog") / "data"
        assert not data.exists() and h.mask_tool_view(app, "dog").startswith("mask tool: queued")  # nothing ran here
        with pytest.raises(SmraboothError, match="already queued"):
            h.prepare_subject_data(app, "dog", h.MASK_SOURCES[1])
        app.queue.start()
        job = app.queue.wait(app.queue.latest("prepare_subject")["id"], timeout=300)
        assert job["status"] == "done", app.queue.log_tail(job["id"])
        assert job["result"]["images"] == 3 and (data / "contact_sheet.png").is_file()
        assert h.mask_tool_view(app, "dog").startswith("mask tool: done: masks of dog")
        assert h.mask_tool_view(app, "cat") == ""  # another subject's page shows no line
    finally:
        app.close()
    detector = GroundingDinoDetector.from_pretrained(tmp_path / "gd", device="cpu")
    sam = SamSegmenter.from_pretrained(tmp_path / "sam", device="cpu")
    prepare_subject(sorted(photos), "dog", tmp_path / "reference", object_prompt="a dog",
                    segmenter=TextPromptedSegmenter(detector, sam, MaskSettings()), log=lambda m: None)
    masks = sorted((data / "masks").iterdir())
    assert [m.name for m in masks] == ["0001.png", "0002.png", "0003.png"]
    for m in masks:
        np.testing.assert_array_equal(np.asarray(Image.open(m)), np.asarray(Image.open(tmp_path / "reference" /
                                                                                       "masks" / m.name)))
    assert (data / "metadata.csv").read_text() == (tmp_path / "reference" / "metadata.csv").read_text()


def test_a_three_frame_clip_gets_the_trainers_error(app, tmp_path):
    from smrabooth.video import write_video

    clip = write_video(np.zeros((3, 32, 32, 3), np.uint8), tmp_path / "three.mp4", fps=15)
    with pytest.raises(SmraboothError, match=r"three.*0.20 s long: 17 frames at 15 fps need 1.13 s"):
        h.prepare_motion_clip(app, "jump", str(clip), "a person S* jumping")
    with pytest.raises(SmraboothError, match="caption is empty"):
        h.prepare_motion_clip(app, "jump", str(clip), " ")


def test_generate_and_evaluate_check_their_inputs(app):
    with pytest.raises(SmraboothError, match="prompt is empty"):
        h.generate(app, None, None, " ")
    with pytest.raises(SmraboothError, match="no finished subject LoRA"):
        h.generate(app, "subject: nope-1", None, "a V* dog")
    with pytest.raises(SmraboothError, match="not 4k\\+1"):
        h.generate(app, None, None, "a dog", frames=10)
    with pytest.raises(SmraboothError, match="unknown recipe 'nope'"):
        h.generate(app, None, None, "a dog", preset="nope")
    job = h.generate(app, None, None, "a dog", steps=3, t_point="2", preset="paper")
    cfg = job["params"]["config"]
    # the paper's sampler, at the bundle's own video size
    assert cfg["steps"] == 3 and cfg["t_point"] == 2 and cfg["scheduler"] == "euler" and cfg["frames"] == 17
    assert h.preset_fields(app, "paper")["frames"] == app.profile.generate["frames"] == 17
    with pytest.raises(SmraboothError, match="outside the work folder"):
        h.evaluate(app, ["../../etc/passwd"], ["dino_i"])
    with pytest.raises(SmraboothError, match="not a video generated in this work folder"):
        h.evaluate(app, ["examples/motion/spiral.mp4"], ["dino_i"])
    with pytest.raises(SmraboothError, match="outside the work folder"):
        h.evaluate(app, ["/etc/passwd"], ["dino_i"])


def test_cli_flags():
    assert parse_auth("ann:secret") == ("ann", "secret")
    with pytest.raises(SmraboothError, match="user:pass"):
        parse_auth("ann")
    assert host_warning("127.0.0.1") is None
    assert "serves the app to other machines" in host_warning("0.0.0.0")


# ------------------------------------------------------------------------------------------------- recipes
@pytest.fixture
def test_recipe(monkeypatch):
    """A recipe unlike the paper's in every field the pages and jobs read."""
    from smrabooth import sampling
    from smrabooth.recipes import RECIPES, MotionRecipe, Recipe, SamplerRecipe, SubjectRecipe

    r = Recipe("test", "a test recipe", SubjectRecipe(steps=7, rank=3, alpha=3.0, lr=2e-4, shift=2.0, sura_weight=0.5),
               MotionRecipe(steps=9, rank=5, alpha=5.0, lr=3e-4, mora_weight=0.25),
               SamplerRecipe(steps=40, shift=1.0, guidance=4.0, negative_prompt="blurry", t_point=12,
                             subject_scale_early=0.6, subject_scale=0.8))
    monkeypatch.setitem(RECIPES, r.name, r)
    monkeypatch.setitem(sampling.PRESETS, r.name, r.sampler.generate_settings())
    return r


def test_training_forms_start_from_the_recipe_on_a_wan_model(tmp_path, test_recipe):
    from smrabooth.recipes import RECIPES
    from smrabooth_ui.profile import wan_profile

    app = h.UiApp(tmp_path / "work", wan_profile("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "cpu"), start_jobs=False)
    try:
        assert h.train_fields(app, "subject", "test") == {"steps": 7, "rank": 3, "lr": 2e-4}
        assert h.train_fields(app, "motion", "test") == {"steps": 9, "rank": 5, "lr": 3e-4}
        default = RECIPES["official"]  # the default recipe
        assert h.train_fields(app, "subject") == {"steps": default.subject.steps, "rank": default.subject.rank,
                                                  "lr": default.subject.lr}
        with pytest.raises(SmraboothError, match="unknown recipe 'nope'"):
            h.train_fields(app, "motion", "nope")
        fields = h.preset_fields(app, "test")  # a Wan model: the recipe's sampler as it is
        assert (fields["steps"], fields["guidance"], fields["negative_prompt"]) == (40, 4.0, "blurry")
        assert (fields["frames"], fields["height"], fields["width"]) == (49, 480, 832)
    finally:
        app.close()


def test_a_recipe_reaches_the_jobs_config_under_the_bundles_sizes(app, test_recipe):
    """The sprites bundle keeps its sizes, steps and ranks; every other setting is the recipe's."""
    cfg = app.profile.train_config("subject", "test")
    assert (cfg.recipe, cfg.shift, cfg.sura_weight) == ("test", 2.0, 0.5)
    assert (cfg.resolution, cfg.steps, cfg.projector_width) == (app.profile.subject["resolution"],
                                                                app.profile.subject["steps"], 256)
    motion = app.profile.train_config("motion", "test")
    assert motion.mora_weight == 0.25 and motion.frames == app.profile.motion["frames"] == 17
    ex = app.examples
    h.add_subject_photos(app, "heart", ex.subject_images, ex.subject_masks)
    h.prepare_subject_data(app, "heart", h.MASK_SOURCES[0])
    job = h.train_subject(app, "heart", 3, 4, 1e-4, recipe="test")
    assert job["params"]["recipe"] == "test" and job["title"] == "train subject heart (test, 3 steps)"
    with pytest.raises(SmraboothError, match="unknown recipe 'nope'"):
        h.train_subject(app, "heart", 3, 4, 1e-4, recipe="nope")

    job = h.generate(app, None, None, "a dog", preset="test", negative_prompt="")
    cfg = job["params"]["config"]
    assert (cfg["shift"], cfg["reference_t_point"], cfg["reference_steps"], cfg["subject_scale_early"]) == \
        (1.0, 12, 40, 0.6)
    assert cfg["negative_prompt"] is None  # emptied on the page
    assert (cfg["frames"], cfg["steps"]) == (17, app.profile.generate["steps"])  # the bundle's own
    app.queue.cancel(job["id"])
    job = h.generate(app, None, None, "a dog", preset="test")
    assert job["params"]["config"]["negative_prompt"] == "blurry"  # the recipe's when the page leaves it
