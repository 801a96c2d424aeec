"""User-study kit: build the page, answer it in headless Chromium, tally the answers."""

import csv
import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smrabooth.cli import main
from smrabooth.errors import SmraboothError
from smrabooth.metrics.study import QUESTIONS, tally
from smrabooth.video import write_video

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
METHODS = ["WAN2.1", "WAN2.1+LoRAs", "SMRABooth"]


@pytest.fixture
def study_inputs(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "subj").mkdir()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "subj" / "dog.png")
    write_video(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), tmp_path / "motion.mp4", fps=4)
    rows = []
    for c, prompt in enumerate(["a dog surfing", "a dog skiing"]):
        for m in METHODS:
            name = f"{m.replace('+', '_')}_{c}.mp4"
            write_video(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), tmp_path / name, fps=4)
            rows.append({"method": m, "video": name, "prompt": prompt, "subject_images": "subj",
                         "reference_video": "motion.mp4"})
    with open(tmp_path / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return tmp_path


def test_build_hides_methods_and_tally_computes_the_table(study_inputs, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "build", "--manifest", str(study_inputs / "runs.csv"), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert not any(m in page for m in METHODS)  # hidden: no method name anywhere in the page or media names
    assert not any(m.split("+")[0] in p.name for p in (out / "media").iterdir() for m in METHODS)
    key = json.loads((out / "key.json").read_text())
    assert len(key["cases"]) == 2 and all(sorted(c["candidates"].values()) == sorted(METHODS) for c in key["cases"])
    # hand-written answers: rating = index of the method + 1 (+1 for video quality in case 2)
    ratings = []
    for c in key["cases"]:
        for cand, m in c["candidates"].items():
            for q in QUESTIONS:
                ratings.append({"case": c["id"], "candidate": cand, "question": q,
                                "rating": METHODS.index(m) + 1 + (q == "video_quality" and c["id"] == "case02")})
    for who in ("p1", "p2"):
        (out / "answers" / f"{who}.json").write_text(json.dumps({"study_id": key["study_id"], "participant": who,
                                                                 "ratings": ratings}))
    summary, flat = tally(sorted((out / "answers").glob("*.json")))
    assert list(summary) == METHODS and len(flat) == 2 * 2 * 3 * 4
    assert summary["SMRABooth"]["prompt_alignment"]["mean"] == 3 and summary["WAN2.1"]["motion_similarity"]["mean"] == 1
    assert summary["SMRABooth"]["video_quality"]["mean"] == pytest.approx(3.5)
    assert summary["SMRABooth"]["prompt_alignment"]["half_width"] == 0
    assert main(["study", "tally", *map(str, sorted((out / "answers").glob("*.json")))]) == 0
    assert "Prompt Alignment" in capsys.readouterr().out
    (out / "answers" / "bad.json").write_text(json.dumps({"study_id": "other", "ratings": []}))
    with pytest.raises(SmraboothError, match="answers study other"):
        tally([out / "answers" / "bad.json"])


def test_build_rejects_a_manifest_naming_missing_files(study_inputs, tmp_path, capsys):
    (study_inputs / "m2.csv").write_text("method,video,prompt\nA,nope.mp4,x\n")
    assert main(["study", "build", "--manifest", str(study_inputs / "m2.csv"), "--out", str(tmp_path / "s")]) == 2
    assert "line 2: video" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_answer_the_study_in_headless_chromium(study_inputs, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    out = tmp_path / "study"
    assert main(["study", "build", "--manifest", str(study_inputs / "runs.csv"), "--out", str(out)]) == 0
    key = json.loads((out / "key.json").read_text())
    method_of = {cand: m for c in key["cases"] for cand, m in c["candidates"].items()}
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    try:
        with sync_api.sync_playwright() as p:
            # a fresh profile: launch_persistent_context takes the --user-data-dir
            ctx = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, accept_downloads=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = ctx.new_page()
            page.goto(url)
            cands = page.locator(".cand")
            assert cands.count() == 6
            # saving with nothing answered is refused
            page.fill("#participant", "alice")
            page.click("#save")
            assert "24 ratings are missing" in page.text_content("#status")
            for i in range(cands.count()):
                cand = cands.nth(i).get_attribute("data-candidate")
                for q in QUESTIONS:
                    rating = METHODS.index(method_of[cand]) + 2  # 2, 3, 4 by method
                    page.check(f'input[name="{cand}|{q}"][value="{rating}"]')
            with page.expect_download() as dl:
                page.click("#save")
            dl.value.save_as(out / "answers" / "alice.json")
            assert "Saved 24 ratings" in page.text_content("#status")
            ctx.close()
    finally:
        server.shutdown()
    answers = json.loads((out / "answers" / "alice.json").read_text())
    assert answers["participant"] == "alice" and answers["study_id"] == key["study_id"]
    summary, _ = tally([out / "answers" / "alice.json"])
    for m in METHODS:
        for q in QUESTIONS:
            assert summary[m][q]["mean"] == METHODS.index(m) + 2 and summary[m][q]["n"] == 2
