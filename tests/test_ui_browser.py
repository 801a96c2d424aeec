"""The web app in headless Chromium, on the bundled SMRA-Sprites model, as a user meets it: one work folder,
two runs of the app.

First run: bad uploads get the loader's error in the page's terms, beside the button; a subject named
"my heart!" keeps its words in the caption; a training's error line is cleared when the form changes and a
click that works leaves no stale line; a page reloaded mid-training shows the run's progress, time left and
curves; a second app on the same work folder is refused; SIGTERM stops the app and leaves no process behind.
Second run: the interrupted training resumes from its checkpoint (losing under a minute of work) with its
curves whole; the LoRA downloads; the library shows fixed-size thumbnails with names; generations with and
without LoRAs are labelled as such, each with its baseline; the Chinese negative prompt is drawn by the
bundled font and the saved settings show it unescaped; past generations play and download; evaluation names
its tracker; the job page shows a log, cancels and removes queued and running jobs; a reload restores the
galleries; screen readers never hear "common.complete".

Screenshots of the pages go to the test's folder, and to $SMRABOOTH_UI_SCREENSHOTS when set
(scripts/ui_screenshots.sh: how docs/ui/ is made).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

# denoising steps of the test's generations: few, except for the docs' screenshots (scripts/ui_screenshots.sh)
GEN_STEPS = "20" if os.environ.get("SMRABOOTH_UI_SCREENSHOTS") else "2"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """`smrabooth ui` in a process of its own; every process it starts carries `mark` in its environment."""

    def __init__(self, tmp_path: Path, work: Path, mark: str):
        self.tmp, self.work, self.mark = tmp_path, work, mark
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
                    "SMRABOOTH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
                    "GRADIO_ANALYTICS_ENABLED": "False", "SMRABOOTH_UI_TEST_MARK": mark}
        self.proc = None

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "smrabooth_ui", "--port", str(port), "--workdir", str(self.work), "--device", "cpu"]

    def start(self, name: str) -> str:
        port = free_port()
        self.log = self.tmp / f"{name}.log"
        with open(self.log, "w") as log:
            # started as a script's background job is, with SIGINT ignored: SIGINT must stop it all the same
            self.proc = subprocess.Popen(["sh", "-c", 'trap "" INT; exec "$@"', "sh", *self.command(port)],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=1)
                return url
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.5)
        raise AssertionError(f"the app did not start: {self.log.read_text()}")

    def processes(self) -> list[int]:
        """Every live process carrying the mark (the app, its worker, anything they started)."""
        found = []
        for env in Path("/proc").glob("[0-9]*/environ"):
            try:
                if f"SMRABOOTH_UI_TEST_MARK={self.mark}".encode() in env.read_bytes():
                    status = (env.parent / "status").read_text()
                    if "State:\tZ" not in status:
                        found.append(int(env.parent.name))
            except OSError:
                continue
        return found

    def signal_and_wait(self, sig: int) -> None:
        """Send `sig` to the app; it must exit cleanly and leave no process it started running."""
        self.proc.send_signal(sig)
        assert self.proc.wait(60) == 0, self.log.read_text()
        end = time.time() + 10
        while self.processes():
            assert time.time() < end, f"left running: {self.processes()}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for pid in self.processes():  # never leave one behind, even when the test failed
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def app_runner(tmp_path):
    pytest.importorskip("gradio")
    runner = App(tmp_path, tmp_path / "work", uuid.uuid4().hex)
    yield runner
    runner.stop()


def wait_text(page, selector: str, text: str, timeout: float = 240) -> str:
    page.wait_for_function("([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)", arg=[selector, text],
                           timeout=timeout * 1000)
    return page.inner_text(selector)


def drawn_lines(page, plot: str, terms: int, points: int, timeout: float = 90) -> dict[str, dict]:
    """Wait until the loss curves `plot` draw `terms` lines of at least `points` points each, with a visible
    stroke; return {term: {stroke, points}}."""
    script = """([plot, terms, points]) => {
        const lines = [...document.querySelectorAll(plot + ' polyline.smra-line')]
            .map(p => ({term: p.dataset.term, stroke: p.getAttribute('stroke'), points: +p.dataset.points}))
            .filter(l => l.stroke && l.stroke !== 'none' && l.points >= points);
        return lines.length >= terms ? lines : null;
    }"""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        lines = page.wait_for_function(script, arg=[plot, terms, points], timeout=timeout * 1000).json_value()
    except PlaywrightTimeout:
        drawn = page.eval_on_selector_all(plot + " polyline.smra-line", "ps => ps.map(p => [p.dataset.term, "
                                          "p.getAttribute('stroke'), p.dataset.points])")
        status = page.evaluate("() => ['#subject-job', '#motion-job'].map(s => document.querySelector(s)?.innerText)")
        raise AssertionError(f"{plot} draws {drawn}, not {terms} lines of {points} points; status: {status}") from None
    return {line["term"]: line for line in lines}


def shot(page, tmp_path, name: str, top: str | None = None) -> None:
    """The whole page into the test's folder; for docs/ui/ ($SMRABOOTH_UI_SCREENSHOTS) one screen from the
    element `top` down (the page's top when None) at 1280x1200, 960 px wide in 256 colours: a small PNG."""
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if os.environ.get("SMRABOOTH_UI_SCREENSHOTS"):
        from PIL import Image

        out = Path(os.environ["SMRABOOTH_UI_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1280, "height": 1200})
        page.evaluate("s => s ? document.querySelector(s).scrollIntoView({block: 'start'}) : window.scrollTo(0, 0)",
                      top)
        page.wait_for_timeout(1000)  # the plots draw again at the new size
        page.screenshot(path=str(tmp_path / f"{name}-screen.png"), full_page=False)
        page.set_viewport_size({"width": 1280, "height": 900})
        im = Image.open(tmp_path / f"{name}-screen.png").convert("RGB")
        im = im.resize((960, round(im.height * 960 / im.width)), Image.LANCZOS)
        im.quantize(256, method=Image.Quantize.MEDIANCUT).save(out / f"{name}.png", optimize=True)


def below(page, control: str, line: str) -> float:
    """Pixels from the bottom of `control` down to the top of `line` (an error line beside its button)."""
    return page.evaluate("([c, l]) => document.querySelector(l).getBoundingClientRect().top - "
                         "document.querySelector(c).getBoundingClientRect().bottom", [control, line])


def choose(page, dropdown: str, option: str) -> None:
    """Pick the option containing `option`; again if the list was redrawn under the click (the job list's labels
    carry each job's status, so a job that changes state redraws it) and another option was taken."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(5):
        page.click(f"{dropdown} input")
        page.click(f"ul[role=listbox] li:has-text('{option}')")
        try:
            page.wait_for_function("([d, o]) => document.querySelector(d + ' input').value.includes(o)",
                                   arg=[dropdown, option], timeout=5000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"{dropdown}: could not choose {option!r}")


ANNOUNCED = """() => { window.__announced = [];
    new MutationObserver(() => document.querySelectorAll('[role=status]').forEach(e => {
        const t = e.textContent.trim(); if (t) window.__announced.push(t); }))
      .observe(document.body, {subtree: true, childList: true, characterData: true}); }"""


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page.set_default_timeout(120_000)  # a shared 2-core machine can take its time over an event
    page.goto(url)
    page.wait_for_selector("#subject-add")
    page.evaluate(ANNOUNCED)
    return page


def reload(page) -> None:
    announced = page.evaluate("() => window.__announced")
    page.reload()
    page.wait_for_selector("#subject-add")
    page.evaluate(ANNOUNCED)
    page.evaluate("a => window.__announced.push(...a)", announced)


def job_of(work: Path, kind: str) -> dict:
    jobs = [json.loads(p.read_text()) for p in (work / "jobs").glob("*.json") if p.name != "costs.json"]
    return max((j for j in jobs if j["kind"] == kind), key=lambda j: j["created"])


def logged_steps(run: Path) -> list[int]:
    log = run / "log.jsonl"
    return [json.loads(ln)["step"] for ln in log.read_text().splitlines() if ln.strip()] if log.is_file() else []


def test_the_web_app_in_chromium(app_runner, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from smrabooth.video import write_video

    work = app_runner.work
    examples = work / "examples"
    (tmp_path / "notes.png").write_text("not an image, a text file with a .png name\n")
    rng = np.random.default_rng(0)
    write_video(rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8), tmp_path / "three.mp4", fps=15)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"])
        # ================================================================ the first run of the app
        url = app_runner.start("app1")
        page = open_page(browser, url)

        # a text file as a photo: the loader's error in the page's terms (no upload path), beside the button
        page.set_input_files("#subject-photos input[type=file]", str(tmp_path / "notes.png"))
        page.click("#subject-add")
        err = wait_text(page, "#subject-status", "error")
        assert err.startswith("error: notes.png is not a readable image") and "/" not in err.split("(")[0]
        assert "gradio" not in err and "smrabooth prepare-subject" not in err
        assert 0 <= below(page, "#subject-add", "#subject-status") < 80
        assert not (work / "subjects" / "heart" / "uploads").exists()  # nothing was kept
        # the mask tool is a queued job; offline without its models it fails, saying what to do in the app's terms
        page.fill("#subject-name :is(textarea, input)", "dog")
        page.set_input_files("#subject-photos input[type=file]", str(examples / "subject" / "images" / "0000.png"))
        page.check("#subject-mask-source label:has-text('mask tool') input")
        page.click("#subject-add")
        wait_text(page, "#subject-mask-job", "masks of dog by the mask tool ('a dog')")
        err = wait_text(page, "#subject-mask-job", "error", timeout=120)
        assert "could not load the detector" in err and "smrabooth ui --detector DIR" in err
        assert page.inner_text("#subject-status").strip() == ""  # no "queued" line left behind
        # a name with punctuation: its words in the caption, a safe folder name on disk
        page.fill("#subject-name :is(textarea, input)", "my heart!")
        page.wait_for_function("() => !document.querySelector('#subject-mask-job').innerText.trim()")
        page.check("#subject-mask-source label:has-text('uploaded masks') input")
        for kind, files in (("photos", "images"), ("masks", "masks")):
            page.set_input_files(f"#subject-{kind} input[type=file]",
                                 sorted(map(str, (examples / "subject" / files).glob("*.png"))))
        page.click("#subject-add")
        wait_text(page, "#subject-status", "prepared 4 photo(s) of my heart")
        caption = (work / "subjects" / "my_heart" / "data" / "metadata.csv").read_text()
        assert "a picture of V* my heart" in caption and "my_heart" not in caption

        # a bad setting: the error under Train, cleared once the form changes; the click that works leaves none
        page.fill("#subject-steps input", "0")
        page.click("#subject-train")
        err = wait_text(page, "#subject-train-notice", "error")
        assert "steps must be positive" in err and 0 <= below(page, "#subject-cancel", "#subject-train-notice") < 80
        page.fill("#subject-steps input", "200")  # the demo's (a long run: the app may ask for a second click)
        page.wait_for_function("() => !document.querySelector('#subject-train-notice').innerText.trim()")
        page.click("#subject-train")
        page.wait_for_function("() => /running|queued|Long job/.test(document.querySelector('#subject-job').innerText"
                               " + document.querySelector('#subject-train-notice').innerText)", timeout=60_000)
        if "Long job" in page.inner_text("#subject-train-notice"):
            assert "Click Train again" in page.inner_text("#subject-train-notice")
            page.click("#subject-train")
        run = work / "runs" / "subject" / "my_heart-1"
        wait_text(page, "#subject-job", "running: train subject my heart (paper, 200 steps)", timeout=120)
        assert page.inner_text("#subject-train-notice").strip() == ""
        from smrabooth.train.common import list_checkpoints

        end = time.time() + 300
        while len(logged_steps(run)) < 3 or not list_checkpoints(run):
            assert time.time() < end, app_runner.log.read_text()
            time.sleep(0.2)

        # a reload mid-training: progress, steps, the time left with its basis, and the curves come back
        reload(page)
        line = wait_text(page, "#subject-job", " left (measured in this run", timeout=60)
        assert "· step " in line and "/200" in line
        assert drawn_lines(page, "#subject-losses", terms=2, points=2)
        # one app per work folder: a second one is refused and says which process holds it
        second = subprocess.run(app_runner.command(free_port()), env=app_runner.env, capture_output=True, text=True,
                                timeout=120, check=False)
        assert second.returncode == 2 and f"another smrabooth ui (process {app_runner.proc.pid})" in second.stderr

        # SIGTERM (kill, a service manager): the app stops, and nothing it started is left running
        worker = job_of(work, "train_subject")["worker"]
        assert worker in app_runner.processes()
        app_runner.signal_and_wait(signal.SIGTERM)
        job = job_of(work, "train_subject")
        assert job["status"] == "interrupted" and not (run / "subject_lora.safetensors").exists()
        last, checkpoint = max(logged_steps(run)), list_checkpoints(run)[-1][0]
        assert not any("common." in a for a in page.evaluate("() => window.__announced"))

        # ================================================================ the second run of the app
        url = app_runner.start("app2")
        page.close()
        page = open_page(browser, url)
        line = wait_text(page, "#subject-job", "interrupted")
        assert "Resume continues it from its last checkpoint" in line and "my heart" in line
        page.click("#subject-resume")
        wait_text(page, "#subject-job", "running: train subject my heart", timeout=120)
        from smrabooth.train.state import read_log
        from smrabooth_ui.eta import call_records

        end = time.time() + 300
        while len(resumed := call_records(read_log(run / "log.jsonl"))) < 3 or resumed[0]["step"] == 1:
            assert time.time() < end, app_runner.log.read_text()  # the resumed call logs its own 'seconds'
            time.sleep(0.2)
        steps = logged_steps(run)
        assert steps == list(range(1, len(steps) + 1))  # one run: its log continued from the checkpoint
        assert resumed[0]["step"] == checkpoint + 1
        per_step = (resumed[-1]["seconds"] - resumed[0]["seconds"]) / (resumed[-1]["step"] - resumed[0]["step"])
        assert (last - checkpoint) * per_step < 60, f"a resume redid {last - checkpoint} steps of {per_step:.1f} s"
        lines = drawn_lines(page, "#subject-losses", terms=2, points=checkpoint + 2)  # flow and SuRA, unbroken
        assert set(lines) == {"flow", "sura"} and lines["flow"]["stroke"] != lines["sura"]["stroke"]
        page.click("#subject-cancel")
        wait_text(page, "#subject-job", "cancelled")
        # a short training for the rest of the workflow; its LoRA downloads
        page.fill("#subject-steps input", "3")
        page.click("#subject-train")
        wait_text(page, "#subject-job", "done: train subject my heart (paper, 3 steps)", timeout=300)
        run = work / "runs" / "subject" / "my_heart-2"
        with page.expect_download() as download:
            page.click("#subject-downloads a[data-file='subject_lora.safetensors']")
        assert Path(download.value.path()).read_bytes() == (run / "subject_lora.safetensors").read_bytes()
        shot(page, tmp_path, "subject", top="#subject-status")

        # ---- motion: a 3-frame clip gets the trainer's error in the page's terms
        page.click("#tab-motion-button")
        page.set_input_files("#motion-clip input[type=file]", str(tmp_path / "three.mp4"))
        page.click("#motion-prepare")
        err = wait_text(page, "#motion-status", "error")
        assert "17 frames at 15 fps need 1.13 s" in err and "fewer Frames (4k+1)" in err and "--" not in err
        page.set_input_files("#motion-clip input[type=file]", str(examples / "motion" / "spiral.mp4"))
        page.click("#motion-prepare")
        wait_text(page, "#motion-status", "prepared spiral_00.mp4")
        page.uncheck("#motion-mora input[type=checkbox]")  # MoRA steps take many seconds each on a shared CPU
        page.fill("#motion-steps input", "2")
        page.click("#motion-train")
        wait_text(page, "#motion-job", "done: train motion spiral", timeout=300)
        page.wait_for_selector("#motion-flow video")
        assert set(drawn_lines(page, "#motion-losses", terms=1, points=2)) == {"flow"}
        shot(page, tmp_path, "motion", top="#motion-status")

        # ---- generate: the library's thumbnails are small boxes of one size, with their names
        page.click("#tab-generate-button")
        page.wait_for_function("() => document.querySelector('#generate-subject input')?.value.includes('my_heart-2')")
        cards = page.eval_on_selector_all("#library-cards figure", """cs => cs.map(c => {
            const b = c.querySelector('.smra-thumb').getBoundingClientRect(), cap = c.querySelector('figcaption');
            return {w: b.width, h: b.height, name: cap.innerText, capH: cap.getBoundingClientRect().height}; })""")
        assert [c["name"] for c in cards] == ["subject: my_heart-2", "motion: spiral-1"]
        assert all(c["w"] == 96 and c["h"] == 96 and c["capH"] > 0 for c in cards)
        page.fill("#generate-steps input", GEN_STEPS)
        page.click("#generate-go")
        wait_text(page, "#generate-status", "done: generate", timeout=300)
        page.wait_for_selector("#generate-result video")
        page.wait_for_selector("#generate-baseline-video video")
        assert "Result: subject my_heart-2 + motion spiral-1" in page.inner_text("#generate-result")
        assert page.evaluate("async () => { const v = document.querySelector('#generate-result video');"
                             " v.muted = true; await v.play(); return !v.paused; }")
        shot(page, tmp_path, "generate", top="#generate-library-title")
        # no LoRA, the official recipe (Wan's Chinese negative prompt): labelled as the plain model, with its
        # baseline (the same video); the negative prompt drawn by the bundled CJK font, the settings unescaped
        choose(page, "#generate-subject", "none")
        choose(page, "#generate-motion", "none")
        choose(page, "#generate-preset", "official")
        page.click("#generate-negative-box button")
        negative = page.input_value("#generate-negative textarea")
        assert "色调艳丽" in negative
        assert page.evaluate("async () => (await document.fonts.load('16px SmraboothCJK', '色调艳丽')).length") == 1
        assert "SmraboothCJK" in page.eval_on_selector("#generate-negative textarea",
                                                        "e => getComputedStyle(e).fontFamily")
        page.fill("#generate-steps input", "2")
        page.click("#generate-go")
        page.wait_for_function("() => document.querySelector('#generate-result')?.innerText.includes('no LoRA')",
                               timeout=300_000)
        wait_text(page, "#generate-status", "done: generate 'a V* heart", timeout=300)
        assert "same video, since no LoRA was chosen" in page.inner_text("#generate-baseline-video")
        page.wait_for_selector("#generate-baseline-video video")
        page.click("text=Settings saved with the video")
        settings = wait_text(page, "#generate-settings", "色调艳丽")
        at = settings.find("\\u")
        assert at < 0, repr(settings[max(0, at - 80):at + 80])
        saved = json.loads((max((work / "videos").iterdir()) / "settings.json").read_text())
        assert saved["baseline_is_result"] and saved["subject_lora"] is None and saved["motion_lora"] is None
        # past generations: both, newest first, each a playable 160-px card with its downloads
        past = page.eval_on_selector_all("#past-videos figure", """cs => cs.map(c => {
            const b = c.querySelector('.smra-thumb').getBoundingClientRect();
            return {w: b.width, h: b.height, text: c.querySelector('figcaption').innerText,
                    video: !!c.querySelector('video')}; })""")
        assert len(past) == 2 and "no LoRA" in past[0]["text"] and "my_heart-2 + spiral-1" in past[1]["text"]
        assert all(c["w"] == 160 and c["h"] == 160 and c["video"] for c in past)
        first = min((work / "videos").iterdir())
        with page.expect_download() as download:
            page.click(f"#video-{first.name} a[data-file='result.mp4']")
        assert Path(download.value.path()).read_bytes() == (first / "result.mp4").read_bytes()

        # ---- evaluate: DINO-I runs (the bundle's DINOv2), CLIP-T cannot load offline and says why
        page.click("#tab-evaluate-button")
        page.wait_for_selector("#evaluate-videos input[type=checkbox]")
        labels = page.eval_on_selector_all("#evaluate-videos label", "ls => ls.map(l => l.innerText)")
        assert sum("no LoRA" in t for t in labels) == 2 and sum("with LoRAs" in t for t in labels) == 1
        for label in labels:  # the generation with LoRAs and its baseline (the one without has no subject images)
            if label.startswith(first.name):
                page.check(f"#evaluate-videos label:has-text('{label.split(':')[0]}') input")
        for box in page.query_selector_all("#evaluate-metrics input[type=checkbox]"):
            box.uncheck()
        page.check("#evaluate-metrics label:has-text('dino_i') input")
        page.check("#evaluate-metrics label:has-text('clip_t') input")
        page.click("#evaluate-go")
        wait_text(page, "#evaluate-status", "done: evaluate 2 video(s)", timeout=300)
        assert "DINO-I" in page.inner_text("#evaluate-table")
        assert "CLIP-T" in wait_text(page, "#evaluate-skipped", "skipped")
        with page.expect_download() as download:
            page.click("#evaluate-downloads a[data-file='report.html']")
        report = Path(job_of(work, "evaluate")["params"]["out"]) / "report.html"
        assert Path(download.value.path()).read_bytes() == report.read_bytes()
        shot(page, tmp_path, "evaluate")

        # ---- the job page: cancel and remove a queued job and a running one; a log and the time left
        page.click("#tab-motion-button")
        page.fill("#motion-steps input", "5000")
        page.click("#motion-train")
        warning = wait_text(page, "#motion-train-notice", "Long job")  # a warning first, with its estimate's basis
        assert "Click Train again" in warning and "measured on this machine" in warning
        assert not job_of(work, "train_motion")["title"].endswith("5000 steps)")  # nothing queued yet
        page.click("#motion-train")
        wait_text(page, "#motion-job", "running: train motion spiral", timeout=120)
        page.click("#tab-generate-button")
        page.click("#generate-go")
        wait_text(page, "#generate-status", "queued: generate")
        page.click("#tab-jobs-button")
        choose(page, "#job-select", "· queued")
        wait_text(page, "#job-status", "queued: generate")
        page.click("#job-cancel")
        wait_text(page, "#job-status", "cancelled")
        page.click("#job-remove")
        wait_text(page, "#job-notice", "removed generate")
        choose(page, "#job-select", "5000 steps) · running")
        wait_text(page, "#job-log", "train motion spiral")
        wait_text(page, "#job-status", " left (")
        shot(page, tmp_path, "jobs", top="#job-select")
        page.click("#job-cancel")
        wait_text(page, "#job-status", "cancelled")
        run2 = Path(job_of(work, "train_motion")["params"]["out"])
        page.click("#job-remove")
        wait_text(page, "#job-notice", "removed train motion spiral")
        assert not run2.exists() and (work / "runs" / "motion" / "spiral-1" / "motion_lora.safetensors").is_file()
        # a finished generation: its result is the newest sample, its files download from the job page
        choose(page, "#job-select", "my_heart-2 + spiral-1")
        wait_text(page, "#job-status", "done: generate")
        page.wait_for_function("() => (document.querySelector('#job-sample video')?.src || '').includes('result.mp4')")
        with page.expect_download() as download:
            page.click("#job-downloads a[data-file='settings.json']")
        assert json.loads(Path(download.value.path()).read_text())["subject_lora"].endswith("subject_lora.safetensors")
        # the stopped 200-step training: resumable, or removed with what it left behind
        choose(page, "#job-select", "200 steps) · cancelled")
        page.wait_for_function("() => !document.querySelector('#job-resume').disabled")
        page.click("#job-remove")
        wait_text(page, "#job-notice", "removed train subject my heart")
        assert not (work / "runs" / "subject" / "my_heart-1").exists()
        assert not any(json.loads(f.read_text())["status"] in ("queued", "running") for f in (work / "jobs").glob("2*.json"))

        # ---- a reload restores everything from the work folder; no stale line, no untranslated announcement
        reload(page)
        page.wait_for_function("() => document.querySelectorAll('#subject-gallery img').length === 4")
        assert page.input_value("#subject-name :is(textarea, input)") == "my heart"  # the subject worked on last
        page.click("#tab-generate-button")
        page.wait_for_function("() => document.querySelectorAll('#past-videos figure').length === 2")
        assert len(page.query_selector_all("#library-cards figure")) == 2
        text = page.inner_text("body")
        assert "queued:" not in text and "running:" not in text
        announced = page.evaluate("() => window.__announced")
        assert "Done" in announced and not any("common." in a for a in announced)  # read out, in words
        browser.close()
    # Ctrl+C (SIGINT) stops the app as SIGTERM did: nothing left running
    app_runner.signal_and_wait(signal.SIGINT)
