"""The web app's handlers, job queue and command, without a browser (tests/test_ui_browser.py drives the pages)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ui_runners import sleepy_runner, stepping_runner

from smrabooth.errors import SmraboothError
from smrabooth_ui import handlers as h
from smrabooth_ui.cli import host_warning, parse_auth
from smrabooth_ui.jobs import JobQueue, error_line, resumable
from smrabooth_ui.profile import resolve_profile
from smrabooth_ui.tasks import flow_to_rgb
from smrabooth_ui.workdir import Workdir, safe_file_name, safe_name


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


def test_loss_curves_draw_every_term_in_its_colour_whenever_it_appears():
    """The curves are drawn here whole at every refresh: a term that appears late (MoRA after a spatial phase,
    a resumed run) is drawn in its colour at once, each line through all of its steps."""
    import re

    from smrabooth_ui.curves import PALETTE, TERM_COLOURS, loss_svg

    assert "first logged step" in loss_svg([], "Losses", "c") and "<polyline" not in loss_svg([], "Losses", "c")
    rows = [{"step": s, "term": "spatial", "value": 1.0 / s} for s in (1, 2, 3)]
    rows += [{"step": s, "term": t, "value": v} for s in (4, 5) for t, v in (("flow", 0.5), ("mora", -0.25 * s))]
    rows += [{"step": 5, "term": "other", "value": 0.1}, {"step": 5, "term": "bad", "value": float("nan")}]
    svg = loss_svg(rows, "Losses (flow, MoRA)", "c")
    found = re.findall(r"data-term='([^']+)' data-points='(\d+)' points='([^']*)' fill='none' stroke='([^']+)'", svg)
    lines = {term: (stroke, int(n), points) for term, n, points, stroke in found}
    assert {t: (c, n) for t, (c, n, _) in lines.items()} == {
        "spatial": (TERM_COLOURS["spatial"], 3), "flow": (TERM_COLOURS["flow"], 2), "mora": (TERM_COLOURS["mora"], 2),
        "other": (PALETTE[0], 1)}  # a non-finite value is left out, not drawn
    # the y axis spans every value: the highest point (spatial, step 1: 1.0) at the top, the lowest (mora,
    # step 5: -1.25) at the bottom of the plot area
    first_y = float(lines["spatial"][2].split()[0].split(",")[1])
    last_y = float(lines["mora"][2].split()[-1].split(",")[1])
    assert first_y < 30 and last_y > 200


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
    try:
        assert q2.get(long["id"])["status"] == "interrupted" and "app stopped" in q2.get(long["id"])["error"]
    finally:
        q2.stop()


def test_one_app_per_work_folder(tmp_path):
    """A lock, not a convention: a second queue on the same work folder is refused (naming the first one's
    process) until the first stops."""
    q = JobQueue(tmp_path, {}, runner=sleepy_runner, start=False)
    with pytest.raises(SmraboothError, match=f"another smrabooth ui \\(process {os.getpid()}\\) uses the work folder"):
        JobQueue(tmp_path, {}, runner=sleepy_runner, start=False)
    q.stop()
    JobQueue(tmp_path, {}, runner=sleepy_runner, start=False).stop()


def test_a_new_app_waits_for_a_worker_left_running(tmp_path):
    """A worker still holding the worker lock (an app killed mid-step) is waited for before anything starts."""
    (tmp_path / "jobs").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / 'jobs' / 'worker.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(2)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    start = time.time()
    q = JobQueue(tmp_path, {}, runner=sleepy_runner, start=False)
    waited = time.time() - start
    q.stop()
    holder.wait(10)
    assert waited > 1.0


def test_resume_continues_the_same_job_and_remove_discards_it(tmp_path):
    q = JobQueue(tmp_path, {}, runner=stepping_runner)
    out = tmp_path / "runs" / "subject" / "heart-1"
    out.mkdir(parents=True)
    try:
        job = q.submit("train_subject", "train subject heart", {"out": str(out), "steps": 30, "sleep": 0.1})
        end = time.time() + 60
        while not (out / "checkpoints" / "step-3").is_dir():
            assert time.time() < end
            time.sleep(0.05)
        q.cancel(job["id"])
        stopped = q.wait(job["id"], 30)
        assert stopped["status"] == "cancelled" and "Resume" in stopped["error"] and resumable(stopped)
        steps_before = len((out / "log.jsonl").read_text().splitlines())
        again = q.resume(job["id"])
        assert again["id"] == job["id"] and again["status"] == "queued" and again["params"]["resume"] is True
        done = q.wait(job["id"], 60)
        assert done["status"] == "done" and not resumable(done)
        steps = [json.loads(ln)["step"] for ln in (out / "log.jsonl").read_text().splitlines()]
        assert steps == list(range(1, 31)) and steps_before >= 3  # one log, the curve unbroken
        with pytest.raises(SmraboothError, match="nothing to resume"):
            q.resume(job["id"])
        # remove: a finished job's outputs stay; an unfinished one's run folder goes with it
        q.remove(job["id"])
        assert q.get(job["id"]) is None and (out / "subject_lora.safetensors").is_file()
        out2 = out.with_name("heart-2")
        out2.mkdir()
        queued = q.submit("train_subject", "train subject heart", {"out": str(out2), "steps": 50})
        q.cancel(queued["id"])
        assert q.wait(queued["id"], 30)["status"] == "cancelled"
        q.remove(queued["id"])
        assert not out2.exists() and not (q.folder / f"{queued['id']}.json").exists()
    finally:
        q.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.is_file() and "State:\tZ" in status.read_text())  # a zombie has ended


def test_the_worker_ends_when_its_app_is_killed(tmp_path):
    """SIGKILL gives the app no chance to stop its worker: the worker's watchdog ends it within a second."""
    script = tmp_path / "app.py"
    script.write_text(
        "import sys, time\n"
        "from smrabooth_ui.jobs import JobQueue\n"
        "from ui_runners import sleepy_runner\n"
        "if __name__ == '__main__':\n"
        f"    q = JobQueue({str(tmp_path / 'work')!r}, {{}}, runner=sleepy_runner)\n"
        "    job = q.submit('train_subject', 'long', {'sleep': 120})\n"
        "    while not (q.get(job['id']) or {}).get('worker'):\n"
        "        time.sleep(0.05)\n"
        "    print(q.get(job['id'])['worker'], flush=True)\n"
        "    time.sleep(120)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    app = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    worker = int(app.stdout.readline())
    end = time.time() + 60
    while not (tmp_path / "work" / "started-long").exists():  # the worker runs the job
        assert time.time() < end and app.poll() is None
        time.sleep(0.1)
    app.kill()
    app.wait(10)
    end = time.time() + 10
    while alive(worker):
        assert time.time() < end, "the worker outlived its app"
        time.sleep(0.1)
    q = JobQueue(tmp_path / "work", {}, runner=sleepy_runner, start=False)  # the next app: interrupted, never done
    try:
        assert [j["status"] for j in q.list()] == ["interrupted"]
    finally:
        q.stop()


def test_a_restart_settles_a_job_the_app_could_not_record(tmp_path):
    """Never 'done' and 'interrupted' at once: a training whose LoRA is whole is done; else interrupted."""
    q = JobQueue(tmp_path, {}, runner=stepping_runner, start=False)
    runs = {}
    for name, finished in (("a-1", True), ("b-1", False)):
        out = tmp_path / "runs" / "subject" / name
        (out / "checkpoints" / "step-2").mkdir(parents=True)
        (out / "checkpoints" / "step-2" / "state.json").write_text("{}")
        if finished:
            (out / "subject_lora.safetensors").write_bytes(b"lora")
        runs[name] = q.submit("train_subject", name, {"out": str(out), "steps": 5})
        q._update(runs[name]["id"], status="running", started=time.time())
    q.stop()  # what a killed app leaves: the jobs still say running
    for name in runs:
        q._update(runs[name]["id"], status="running", finished=None, error=None)
    q = JobQueue(tmp_path, {}, runner=stepping_runner, start=False)
    try:
        a, b = q.get(runs["a-1"]["id"]), q.get(runs["b-1"]["id"])
        assert a["status"] == "done" and a["result"]["lora"].endswith("subject_lora.safetensors") and not resumable(a)
        assert b["status"] == "interrupted" and resumable(b)
    finally:
        q.stop()


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
    with pytest.raises(SmraboothError, match="nothing to resume: no subject training of heart"):
        h.resume_training(app, "subject", "heart")
    job = h.train_subject(app, "heart", 3, 4, 1e-4)
    assert job["status"] == "queued" and job["params"]["use_mask"] is False
    assert Path(job["params"]["out"]).parent == app.wd.runs("subject")
    with pytest.raises(SmraboothError, match="already queued"):
        h.train_subject(app, "heart", 3, 4, 1e-4)
    recipe = app.profile.recipe  # the demo's, on the sprites model
    assert h.train_view(app, "train_subject").status.startswith(f"queued: train subject heart ({recipe}, 3 steps) · "
                                                                "takes about")


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
    # the time left from the run's own steps (the log's seconds: 1 s per step), with what it rests on
    assert v.progress == 0.75
    assert v.status == "running: train motion m (4 steps) · step 3/4 · about 1 s left (measured in this run: 1 s/step)"
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
        assert h.prepare_subject_data(app, "dog", h.MASK_SOURCES[1], "a dog") == ""  # the job's own line says it
        assert h.mask_tool_view(app, "dog").startswith("mask tool: queued: masks of dog by the mask tool ('a dog')")
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


# ------------------------------------------------------------------------------------------ the pages' terms
def test_messages_in_the_pages_terms(tmp_path, monkeypatch):
    """No command-line flag the page has no control for, no Gradio upload path; the app's own command line is
    named when only it can help."""
    from smrabooth_ui.messages import page_terms

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    upload = tmp_path / "gradio" / "0a1b2c" / "notes.png"
    assert page_terms(f"smrabooth prepare-subject: {upload} is not a readable image (cannot identify {upload})") == \
        "notes.png is not a readable image (cannot identify notes.png)"
    too_short = ("clip.mp4 is 0.20 s long: 17 frames at 15 fps need 1.13 s. Use a longer clip, fewer --frames (4k+1), "
                 "a lower --fps, or --loop to repeat the clip")
    said = page_terms(too_short)
    assert "--" not in said and "fewer Frames (4k+1), a lower fps, or an earlier 'Start (s)'" in said
    assert page_terms("download it and pass it with --aesthetic-head") == \
        "download it and start the app with it (smrabooth ui --aesthetic-head FILE)"
    assert page_terms("steps: 'x' (--steps must be positive; see --mixed-precision)") == \
        "steps: 'x' ('Steps' must be positive; see mixed precision)"
    assert page_terms(f"{tmp_path}/work/runs/a-1/log.jsonl line 3", tmp_path / "work") == "runs/a-1/log.jsonl line 3"


def test_display_names_keep_the_words_the_folders_are_safe(app):
    from smrabooth_ui.workdir import display_name

    assert display_name("my heart!") == "my heart" and display_name("  Rex (the dog) ") == "Rex the dog"
    assert display_name("chien d'eau-douce") == "chien d'eau-douce" and display_name("猫 cat") == "猫 cat"
    with pytest.raises(SmraboothError, match="no letters or digits"):
        display_name("?!")
    ex = app.examples
    h.add_subject_photos(app, "my heart!", ex.subject_images, ex.subject_masks)
    assert h.prepare_subject_data(app, "my heart!") == "prepared 4 photo(s) of my heart: check the contact sheet"
    data = app.wd.root / "subjects" / "my_heart" / "data"
    assert "a picture of V* my heart" in (data / "metadata.csv").read_text()
    job = h.train_subject(app, "my heart!", 3, 4, 1e-4, validate_every=1)
    assert job["title"].startswith("train subject my heart (") and job["params"]["validation_prompt"] == \
        "a picture of V* my heart"
    assert h.recent_names(app)[0] == "my heart"


def test_a_long_job_asks_for_a_second_click_and_says_what_its_estimate_rests_on(app):
    from smrabooth_ui import eta

    ex = app.examples
    h.add_subject_photos(app, "heart", ex.subject_images, ex.subject_masks)
    h.prepare_subject_data(app, "heart")
    params = {"use_sura": True, "recipe": app.profile.recipe}
    app.costs.record(eta.cost_key(app.profile, "train_subject", params), per_step=4.0, overhead=30.0)
    with pytest.raises(h.LongJob, match=r"^Training the subject LoRA \(200 steps\) would take about 13 min 50 s "
                       r"\(measured on this machine: 4 s/step in 1 earlier job\) on this CPU\. Click Train again") as e:
        h.train_subject(app, "heart", 200, 16, 5e-4)
    assert app.queue.list() == []  # nothing queued at the first click
    with pytest.raises(h.LongJob):  # other settings: another warning
        h.train_subject(app, "heart", 300, 16, 5e-4, confirm=e.value.token)
    job = h.train_subject(app, "heart", 200, 16, 5e-4, confirm=e.value.token)
    # checkpoints every 20 s of estimated work: a resume redoes under a minute even 3x slower
    assert job["status"] == "queued" and job["params"]["checkpoint_every"] == 5
    assert not _long(app, 100)  # 100 steps: about 7 min, no question asked


def _long(app, steps):
    from smrabooth_ui import eta

    params = {"use_sura": True, "recipe": app.profile.recipe, "steps": steps}
    return eta.estimate(app.costs, app.profile, "train_subject", params).seconds > eta.WARN_SECONDS


def test_costs_are_measured_from_finished_jobs(tmp_path, sprites_profile):
    from smrabooth_ui import eta

    run = tmp_path / "run"
    run.mkdir()
    # a first call killed after step 3, resumed from step 2: the newest call's steps are 3.5 s apart
    records = [{"step": 1, "seconds": 9.0}, {"step": 2, "seconds": 10.0}, {"step": 3, "seconds": 11.0},
               {"step": 3, "seconds": 2.0}, {"step": 4, "seconds": 5.5}, {"step": 5, "seconds": 9.0}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [r["step"] for r in eta.call_records(records)] == [3, 4, 5]
    job = {"kind": "train_motion", "status": "done", "started": 100.0, "finished": 130.0,
           "params": {"out": str(run), "steps": 5, "use_mora": True, "recipe": "paper"}}
    assert eta.measure(job) == (3.5, 30.0 - 3.5 * 3)
    gen = {"kind": "generate", "status": "done", "started": 0.0, "finished": 50.0,
           "params": {"config": {"steps": 10, "frames": 17, "height": 128, "width": 128, "guidance": 5.0},
                      "baseline": True, "subject_lora": "x"}, "result": {"result_seconds": 20.0, "baseline_seconds": 20.0}}
    assert eta.measure(gen) == (2.0, 10.0) and eta.job_steps("generate", gen["params"]) == 20
    costs = eta.Costs(tmp_path / "costs.json")
    eta.record_job(costs, sprites_profile, job)
    eta.record_job(costs, sprites_profile, {**job, "finished": 160.0})  # the newest weighs half
    key = eta.cost_key(sprites_profile, "train_motion", job["params"])
    assert key == "sprites|cpu|train_motion:mora|paper|" and costs.get(key)["jobs"] == 2
    assert costs.get(key)["overhead"] == pytest.approx((19.5 + 49.5) / 2)
    est = eta.estimate(costs, sprites_profile, "train_motion", job["params"])
    assert est.seconds == pytest.approx(34.5 + 5 * 3.5) and "in 2 earlier jobs" in est.basis
    assert eta.checkpoint_every(est, 100, 100) == 5 and eta.checkpoint_every(est, 8, 100) == 2
    assert eta.checkpoint_every(eta.Estimate(None, "?"), 200, 100) == 50
    assert eta.duration(42) == "about 42 s" and eta.duration(3725) == "about 1 h 02 min"


def test_result_labels_and_cards(app):
    """A generation says what made it; a no-LoRA one is the plain model and is its own baseline. Cards are
    fixed boxes with their names and downloads."""
    labels = h.result_labels({"subject_lora": "/w/runs/subject/heart-1/subject_lora.safetensors",
                              "motion_lora": "/w/runs/motion/spiral-2/motion_lora.safetensors",
                              "config": {"injection": "sparse"}})
    assert labels[0] == "Result: subject heart-1 + motion spiral-2 (sparse injection)"
    result, baseline = h.result_labels({"subject_lora": None, "motion_lora": None, "config": {}})
    assert result == "Result: no LoRA (the plain model)" and "same video" in baseline
    assert "No finished LoRA yet" in h.library_html(app) and "No video yet" in h.past_generations_html(app)
    run = app.wd.runs("subject") / "my_heart-1"
    run.mkdir(parents=True)
    (run / "subject_lora.safetensors").write_bytes(b"x")
    from PIL import Image

    Image.new("RGB", (300, 40)).save(run / "thumbnail.png")  # a wide picture: fitted into the box, not cropped
    cards = h.library_html(app)
    assert cards.count("<figure class='smra-card'") == 1 and "<figcaption title='subject: my_heart-1'>" in cards
    assert f"href='/gradio_api/file={run.resolve()}/subject_lora.safetensors'" in cards and "download=" in cards
    video = app.wd.root / "videos" / "20260101-000000-1"
    video.mkdir(parents=True)
    (video / "result.mp4").write_bytes(b"x")
    (video / "settings.json").write_text(json.dumps({"config": {"prompt": "a <b>V*</b> heart", "seed": 3},
                                                     "subject_lora": None, "motion_lora": None}))
    past = h.past_generations_html(app)
    assert "<figure class='smra-card big'" in past and "a &lt;b&gt;V*&lt;/b&gt; heart · no LoRA · seed 3" in past
    assert "<video src=" in past and "data-file='result.mp4'" in past and "baseline.mp4" not in past


def test_the_job_page_shows_a_readable_log_and_the_newest_steps(app):
    run = app.wd.runs("subject") / "heart-1"
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text("".join(json.dumps({"step": s, "flow": 0.5 / s, "sura": -0.25, "lr": 1e-4,
                                                       "seconds": 2.0 * s}) + "\n" for s in (1, 2, 3)))
    job = app.queue.submit("train_subject", "train subject heart (paper, 5 steps)",
                           {"out": str(run), "steps": 5, "use_sura": True, "recipe": "paper"})
    (app.queue.folder / f"{job['id']}.log").write_text(
        "--- start\nLoading:   0%|  | 0/5\rLoading: 100%|##| 5/5\n\x1b[ALoading weights: 100%\n\n")
    app.queue._update(job["id"], status="running", started=time.time())
    d = h.job_detail(app, job["id"])
    assert d.log.splitlines() == ["--- start", "Loading: 100%|##| 5/5", "Loading weights: 100%",
                                  "step 1: flow 0.5, sura -0.25 (2 s)", "step 2: flow 0.25, sura -0.25 (4 s)",
                                  "step 3: flow 0.1667, sura -0.25 (6 s)"]
    assert d.can_cancel and not d.can_resume and not d.can_remove and d.progress == 0.6
    assert "step 3/5 · about 4 s left (measured in this run: 2 s/step)" in d.status
    assert [label for label, _ in h.job_choices(app)] == [
        time.strftime("%m-%d %H:%M:%S", time.localtime(job["created"])) + " · train subject heart (paper, 5 steps) · running"]


def test_every_job_has_an_estimate_once_one_like_it_ran(tmp_path, sprites_profile):
    """Evaluations and the mask tool count videos x metrics and photos; measured, they are estimated too."""
    from smrabooth_ui import eta

    costs = eta.Costs(tmp_path / "costs.json")
    params = {"items": [{}, {}], "metrics": ["dino_i", "clip_t", "clip_i"], "tracker": "searaft"}
    assert not eta.estimate(costs, sprites_profile, "evaluate", params).known
    eta.record_job(costs, sprites_profile, {"kind": "evaluate", "status": "done", "started": 0.0, "finished": 30.0,
                                            "params": params})
    est = eta.estimate(costs, sprites_profile, "evaluate", {**params, "items": [{}] * 4})
    assert est.seconds == pytest.approx(60.0) and "5 s/video and metric" in est.basis
    mask = {"photos": 3}
    eta.record_job(costs, sprites_profile, {"kind": "prepare_subject", "status": "done", "started": 0.0,
                                            "finished": 12.0, "params": mask})
    assert eta.estimate(costs, sprites_profile, "prepare_subject", {"photos": 5}).text() == \
        "about 20 s (measured on this machine: 4 s/photo in 1 earlier job)"


def test_the_sprites_pages_train_with_the_demos_settings(app, monkeypatch):
    """The app takes the sprite world's training settings from the demo's (DEMO_SETTINGS): where the subject LoRA is
    trained and MoRA's settings included, the same trainer fields the lab's own runs get; a change there reaches it."""
    from dataclasses import replace

    from smrabooth_sprites import experiment as exp
    from smrabooth_ui.profile import resolve_profile

    subject, motion = app.profile.train_config("subject", "paper"), app.profile.train_config("motion", "paper")
    demo = exp.demo_settings()
    assert tuple(subject.layer_types) == demo.subject_layer_types == ("q", "k", "ffn.0")
    assert (motion.mora_max_sigma, motion.mora_reference) == (demo.mora_max_sigma, demo.mora_reference) == (0.2, "decoded")
    for name, value in exp.lab_motion_settings(demo).items():
        assert getattr(motion, name) == value, name
    for name, value in exp.lab_subject_settings(demo).items():
        assert getattr(subject, name) == (list(value) if isinstance(getattr(subject, name), list) else value), name
    monkeypatch.setattr(exp, "DEMO_SETTINGS", replace(exp.DEMO_SETTINGS, mora_max_sigma=0.5, subject_steps=7))
    changed = resolve_profile(None, "cpu")
    assert (changed.train_config("motion").mora_max_sigma, changed.train_config("subject").steps) == (0.5, 7)


def test_a_motion_estimate_counts_mora_on_its_share_of_the_steps(app):
    """MoRA under --mora-max-sigma 0.2 runs on 47 of 1000 draws (shift 5): a step costs a plain step plus 4.7% of
    MoRA's extra, not a MoRA step (the reference timings: plain 0.84 s, MoRA 27.5 s a step)."""
    from smrabooth_ui import eta

    plain, mora = eta.SPRITES_CPU["train_motion:plain"][0], eta.SPRITES_CPU["train_motion:mora"][0]
    params = {"use_mora": True, "recipe": "paper", "steps": 400, "mora_max_sigma": 0.2}
    est = eta.estimate(app.costs, app.profile, "train_motion", params)
    assert est.per_step == pytest.approx(plain + 0.047 * (mora - plain))
    assert "MoRA on 4.7% of the steps" in est.basis
    every = eta.estimate(app.costs, app.profile, "train_motion", {**params, "mora_max_sigma": 1.0})
    assert every.per_step == mora
    assert eta.cost_key(app.profile, "train_motion", params) != eta.cost_key(app.profile, "train_motion",
                                                                               {**params, "mora_max_sigma": 1.0})


def test_the_examples_never_replace_a_subject_or_motion_of_the_users_by_their_name(app, tmp_path):
    """'Use the example' replaces the example's own folder (the heart, the spiral): a user's subject or motion of
    that name is refused, never deleted."""
    from PIL import Image

    from smrabooth.video import write_video

    ex = app.examples
    mine = tmp_path / "my_heart.png"
    Image.fromarray(np.full((40, 48, 3), 200, np.uint8)).save(mine)
    h.add_subject_photos(app, ex.subject_name, [str(mine)])
    with pytest.raises(SmraboothError, match="my_heart.png, which is not the example's: it is kept"):
        h.use_example_subject(app)
    assert (app.wd.subject(ex.subject_name) / "uploads" / "my_heart.png").is_file()
    clip = write_video(np.full((9, 32, 32, 3), 90, np.uint8), tmp_path / "my_spiral.mp4", fps=8)
    h.prepare_motion_clip(app, ex.motion_name, str(clip), "a ball S* moving", frames=9, fps=8)
    with pytest.raises(SmraboothError, match="my_spiral.mp4, which is not the example's"):
        h.use_example_motion(app)
    assert (app.wd.motion(ex.motion_name) / "uploads" / "my_spiral.mp4").is_file()
    h.remove_subject_photo(app, ex.subject_name, "my_heart.png")
    assert h.use_example_subject(app)[0] == ex.subject_name  # an emptied one is the example's to fill


def test_removing_a_job_deletes_only_a_folder_the_work_folder_made_for_jobs(tmp_path):
    """A job whose record names another folder as its "out" (a damaged or edited jobs/<id>.json): removing the job
    leaves that folder alone."""
    q = JobQueue(tmp_path, {}, runner=stepping_runner)
    uploads = tmp_path / "subjects" / "dog"
    (uploads / "uploads").mkdir(parents=True)
    (uploads / "uploads" / "a.png").write_bytes(b"photo")
    try:
        job = q.submit("train_subject", "train subject dog", {"out": str(uploads), "steps": 50})
        q.cancel(job["id"])
        assert q.wait(job["id"], 30)["status"] == "cancelled"
        q.remove(job["id"])
        assert (uploads / "uploads" / "a.png").read_bytes() == b"photo"
    finally:
        q.stop()
