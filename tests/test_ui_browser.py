"""The web app in headless Chromium: the whole workflow on the bundled SMRA-Sprites model.

Starts `smrabooth ui` (through smrabooth_ui.cli) on a free port, uploads the example subject and motion
through the file inputs, trains both LoRAs a few steps, generates with and without them, plays the
video, evaluates, and checks malformed uploads show the CLI's error line. Screenshots of each page
go to the test's folder (and to $SMRABOOTH_UI_SCREENSHOTS when set: how docs/ui/ was made).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    pytest.importorskip("gradio")
    port, work = free_port(), tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "SMRABOOTH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - the server writes to it until the end
    proc = subprocess.Popen([sys.executable, "-m", "smrabooth_ui", "--port", str(port), "--workdir", str(work),
                             "--device", "cpu"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                time.sleep(0.5)
        yield url, work
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_text(page, selector: str, text: str, timeout: float = 240) -> str:
    page.wait_for_function("([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)", arg=[selector, text],
                           timeout=timeout * 1000)
    return page.inner_text(selector)


def drawn_lines(page, plot: str, terms: int, points: int, timeout: float = 30) -> dict[str, dict]:
    """Wait until the loss plot `plot` draws `terms` lines of at least `points` points each, with a visible
    stroke; return {term: {stroke, points}}. (A line without a stroke is what an empty-looking plot has.)"""
    script = """([plot, terms, points]) => {
        const lines = [...document.querySelectorAll(plot + ' path[aria-roledescription="line mark"]')]
            .map(p => ({term: (p.getAttribute('aria-label') || '').split('term: ')[1],
                        stroke: p.getAttribute('stroke'), points: (p.getAttribute('d') || '').split('L').length}))
            .filter(l => l.stroke && l.stroke !== 'none' && l.stroke !== 'transparent' && l.points >= points);
        return lines.length >= terms ? lines : null;
    }"""
    lines = page.wait_for_function(script, arg=[plot, terms, points], timeout=timeout * 1000).json_value()
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


def test_whole_workflow_in_chromium(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from smrabooth.video import write_video

    url, work = server
    examples = work / "examples"
    (tmp_path / "notes.png").write_text("not an image, a text file with a .png name\n")
    rng = np.random.default_rng(0)
    write_video(rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8), tmp_path / "three.mp4", fps=15)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu",
                                          "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_selector("#subject-add")

        # ---- subject: a text file as a photo is refused with the loader's error line
        page.set_input_files("#subject-photos input[type=file]", str(tmp_path / "notes.png"))
        page.click("#subject-add")
        err = wait_text(page, "#subject-status", "error")
        assert "smrabooth prepare-subject: error:" in err and "notes.png is not a readable image" in err
        assert not (work / "subjects" / "heart" / "uploads").exists()  # nothing was kept
        # the mask tool is a queued job; offline without its models it fails with prepare-subject's error line
        page.fill("#subject-name :is(textarea, input)", "dog")
        page.set_input_files("#subject-photos input[type=file]", str(examples / "subject" / "images" / "0000.png"))
        page.check("#subject-mask-source label:has-text('mask tool') input")
        page.click("#subject-add")
        assert "queued: masks of dog by the mask tool" in wait_text(page, "#subject-status", "queued")
        err = wait_text(page, "#subject-mask-job", "error", timeout=120)
        assert "smrabooth prepare-subject: error: could not load the detector" in err
        page.fill("#subject-name :is(textarea, input)", "heart")
        page.check("#subject-mask-source label:has-text('uploaded masks') input")
        # the example subject, uploaded like a user's photos, with its masks
        for kind, files in (("photos", "images"), ("masks", "masks")):
            page.set_input_files(f"#subject-{kind} input[type=file]",
                                 sorted(map(str, (examples / "subject" / files).glob("*.png"))))
        page.click("#subject-add")
        wait_text(page, "#subject-status", "prepared 4 photo(s) of heart")
        assert (work / "subjects" / "heart" / "data" / "contact_sheet.png").is_file()
        page.fill("#subject-steps input", "3")
        page.click("#subject-train")
        assert "3 steps" in wait_text(page, "#subject-job", "done: train subject heart")
        lines = drawn_lines(page, "#subject-losses", terms=2, points=3)  # the log's 3 steps of flow and SuRA
        assert set(lines) == {"flow", "sura"} and lines["flow"]["stroke"] != lines["sura"]["stroke"]
        shot(page, tmp_path, "subject", top="#subject-status")

        # ---- motion: a 3-frame clip is refused with the trainer's error line
        page.click("#tab-motion-button")
        page.set_input_files("#motion-clip input[type=file]", str(tmp_path / "three.mp4"))
        page.click("#motion-prepare")
        err = wait_text(page, "#motion-status", "error")
        assert "smrabooth prepare-motion: error:" in err and "17 frames at 15 fps need 1.13 s" in err
        page.set_input_files("#motion-clip input[type=file]", str(examples / "motion" / "spiral.mp4"))
        page.click("#motion-prepare")
        wait_text(page, "#motion-status", "prepared spiral_00.mp4")
        page.uncheck("#motion-mora input[type=checkbox]")  # MoRA steps take ~30 s each on a shared CPU
        page.fill("#motion-steps input", "2")
        page.click("#motion-train")
        assert "2 steps" in wait_text(page, "#motion-job", "done: train motion spiral")
        page.wait_for_selector("#motion-flow video")
        # the default (official) recipe: the motion LoRA's flow and debiased losses, one line each
        lines = drawn_lines(page, "#motion-losses", terms=2, points=2)
        assert set(lines) == {"flow", "debiased"} and lines["flow"]["stroke"] != lines["debiased"]["stroke"]
        shot(page, tmp_path, "motion", top="#motion-status")

        # ---- generate with both LoRAs (picked for us: the newest) and the baseline
        page.click("#tab-generate-button")
        page.wait_for_function("() => document.querySelector('#generate-subject input')?.value.includes('heart-1')")
        page.fill("#generate-steps input", "4")
        page.click("#generate-go")
        wait_text(page, "#generate-status", "done: generate")
        page.wait_for_selector("#generate-result video")
        start = page.evaluate("async () => { const v = document.querySelector('#generate-result video');"
                              " v.muted = true; await v.play(); return v.currentTime; }")
        page.wait_for_timeout(700)
        now = page.evaluate("() => document.querySelector('#generate-result video').currentTime")
        assert now > start or page.evaluate("() => document.querySelector('#generate-result video').loop")
        assert page.evaluate("() => !document.querySelector('#generate-result video').paused")
        page.wait_for_selector("#generate-baseline-video video")
        shot(page, tmp_path, "generate", top="#generate-subject")
        folders = [f for f in (work / "videos").iterdir() if (f / "settings.json").is_file()]
        assert len(folders) == 1
        settings = json.loads((folders[0] / "settings.json").read_text())
        assert (folders[0] / "result.mp4").is_file() and (folders[0] / "baseline.mp4").is_file()
        assert settings["config"]["steps"] == 4 and settings["subject_lora"].endswith("subject_lora.safetensors")

        # ---- evaluate: DINO-I runs (the bundle's DINOv2), CLIP-T cannot load offline and says why
        page.click("#tab-evaluate-button")
        page.wait_for_selector("#evaluate-videos input[type=checkbox]")
        for box in page.query_selector_all("#evaluate-videos input[type=checkbox]"):
            box.check()
        for box in page.query_selector_all("#evaluate-metrics input[type=checkbox]"):
            box.uncheck()
        page.check("#evaluate-metrics label:has-text('dino_i') input")
        page.check("#evaluate-metrics label:has-text('clip_t') input")
        page.click("#evaluate-go")
        wait_text(page, "#evaluate-status", "done: evaluate 2 video(s)")
        assert "DINO-I" in page.inner_text("#evaluate-table")
        assert "CLIP-T" in wait_text(page, "#evaluate-skipped", "skipped")
        shot(page, tmp_path, "evaluate")

        # ---- a reload shows the same state (read from the work folder)
        page.reload()
        page.click("#tab-generate-button")
        wait_text(page, "#generate-status", "done: generate")
        browser.close()
