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
from smrabooth.metrics.study import PAGE_DIR, QUESTIONS, json_for_script, tally
from smrabooth.video import write_video

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
METHODS = ["WAN2.1", "WAN2.1+LoRAs", "SMRABooth"]


HOSTILE_PROMPTS = ["a dog <!--<script> surfing __TITLE__ </script>", 'a "dog" & __DATA__ skiing\u2028</p>']
HOSTILE_TITLE = 'Study "A" __DATA__ </title><script>alert(1)</script> __TITLE__ & <!--'


def make_manifest(tmp_path, prompts):
    rng = np.random.default_rng(0)
    (tmp_path / "subj").mkdir(exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "subj" / "dog.png")
    write_video(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), tmp_path / "motion.mp4", fps=4)
    rows = []
    for c, prompt in enumerate(prompts):
        for m in METHODS:
            name = f"{m.replace('+', '_')}_{c}.mp4"
            write_video(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), tmp_path / name, fps=4)
            rows.append({"method": m, "video": name, "prompt": prompt, "subject_images": "subj",
                         "reference_video": "motion.mp4"})
    with open(tmp_path / "runs.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return tmp_path


@pytest.fixture
def study_inputs(tmp_path):
    return make_manifest(tmp_path, ["a dog surfing", "a dog skiing"])


def build(inputs, out, *extra):
    assert main(["study", "build", "--manifest", str(inputs / "runs.csv"), "--out", str(out), *extra]) == 0
    return json.loads((out / "key.json").read_text())


def answers_for(key, rate, participant):
    """A complete answers file: rate(method, question, case id) for every candidate and question."""
    ratings = [{"case": c["id"], "candidate": cand, "question": q, "rating": rate(m, q, c["id"])}
               for c in key["cases"] for cand, m in c["candidates"].items() for q in QUESTIONS]
    return {"study_id": key["study_id"], "participant": participant, "ratings": ratings}


def test_build_hides_methods_and_keeps_the_key_out_of_the_page(study_inputs, tmp_path, capsys):
    out = tmp_path / "study"
    key = build(study_inputs, out)
    printed = capsys.readouterr().out
    assert f"--directory {out / PAGE_DIR} " in printed  # the printed server command serves only the page
    assert sorted(p.name for p in out.iterdir()) == ["answers", "key.json", PAGE_DIR]
    assert sorted(p.name for p in (out / PAGE_DIR).iterdir()) == ["index.html", "media"]
    page = (out / PAGE_DIR / "index.html").read_text()
    assert not any(m in page for m in METHODS)  # hidden: no method name anywhere in the page or media names
    assert not any(m.split("+")[0] in p.name for p in (out / PAGE_DIR / "media").iterdir() for m in METHODS)
    assert len(key["cases"]) == 2 and all(sorted(c["candidates"].values()) == sorted(METHODS) for c in key["cases"])
    # the study id is random per build, even with the same seed; the page carries it
    other = build(study_inputs, tmp_path / "study2")
    assert key["study_id"] != other["study_id"] and key["study_id"] in page


def test_tally_intervals_are_over_participants(study_inputs, tmp_path, capsys):
    out = tmp_path / "study"
    key = build(study_inputs, out)
    # p1 rates by method index (1, 2, 3), p2 one higher; video quality of case02 one more for both
    for who, plus in (("p1", 0), ("p2", 1)):
        rate = lambda m, q, c, plus=plus: METHODS.index(m) + 1 + plus + (q == "video_quality" and c == "case02")
        (out / "answers" / f"{who}.json").write_text(json.dumps(answers_for(key, rate, who)))
    files = sorted((out / "answers").glob("*.json"))
    summary, flat = tally(files)
    assert list(summary) == METHODS and len(flat) == 2 * 2 * 3 * 4
    s = summary["SMRABooth"]["prompt_alignment"]
    # participant means 3 and 4: n = 2 participants, t(0.975, 1) * sd / sqrt(2) with sd = sqrt(1/2)
    assert s["mean"] == 3.5 and s["n"] == 2 and s["ratings"] == 4
    assert s["half_width"] == pytest.approx(12.706204736174707 * np.sqrt(0.5) / np.sqrt(2))
    assert summary["SMRABooth"]["video_quality"]["mean"] == pytest.approx(4.0)  # (3.5 + 4.5) / 2
    assert summary["WAN2.1"]["motion_similarity"]["mean"] == 1.5
    capsys.readouterr()
    assert main(["study", "tally", *map(str, files)]) == 0
    printed = capsys.readouterr().out
    assert "2 participants, 48 ratings" in printed
    head, _, first = printed.splitlines()[1:4]
    assert head.split()[:3] == ["method", "participants", "ratings"] and first.split()[:4] == ["WAN2.1", "2", "16", "1.50"]
    # answers of one build are not credited by another build's key
    wrong = answers_for(build(study_inputs, tmp_path / "s2"), lambda m, q, c: 3, "p3")
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    with pytest.raises(SmraboothError, match="answers study .* but .*key.json is study"):
        tally([tmp_path / "wrong.json"], out / "key.json")


@pytest.mark.parametrize("case,want", [
    ("same_file_twice", "is given twice"),
    ("same_participant", "both hold the answers of participant 'p1'"),
    ("rated_twice", "is rated twice in this file"),
    ("fraction", "must be a whole number 1-5, got 4.9"),
    ("text", "must be a whole number 1-5, got '4'"),
    ("missing", "must be a whole number 1-5, got None"),
    ("out_of_range", "must be a whole number 1-5, got 6"),
    ("not_json", "is not a readable answers file"),
    ("no_ratings", "is not an answers file of a smrabooth study"),
    ("rating_not_a_dict", "needs a candidate and a question"),
])
def test_tally_rejects_bad_answers_with_one_line(study_inputs, tmp_path, capsys, case, want):
    out = tmp_path / "study"
    key = build(study_inputs, out)
    good = answers_for(key, lambda m, q, c: 3, "p1")
    a, b = out / "answers" / "a.json", out / "answers" / "b.json"
    a.write_text(json.dumps(good))
    files = [a]
    bad = json.loads(json.dumps(good))
    if case == "same_file_twice":
        files = [a, out / "answers" / ".." / "answers" / "a.json"]
    elif case == "same_participant":
        b.write_text(json.dumps(good))
        files = [a, b]
    elif case == "not_json":
        a.write_text("{not json")
    elif case == "no_ratings":
        a.write_text(json.dumps({"study_id": key["study_id"]}))
    else:
        if case == "rated_twice":
            bad["ratings"].append(dict(bad["ratings"][0]))
        elif case == "rating_not_a_dict":
            bad["ratings"][1] = 4
        elif case == "missing":
            del bad["ratings"][2]["rating"]
        else:
            bad["ratings"][2]["rating"] = {"fraction": 4.9, "text": "4", "out_of_range": 6}[case]
        a.write_text(json.dumps(bad))
    with pytest.raises(SmraboothError, match=want.replace("(", r"\(").replace(")", r"\)")):
        tally(files)
    capsys.readouterr()
    assert main(["study", "tally", *map(str, files)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "a.json" in err and "Traceback" not in err


def test_json_for_script_cannot_close_the_element():
    hostile = {"p": "</script><!--<script> & \u2028\u2029 __DATA__ >"}
    text = json_for_script(hostile)
    assert not set("<>&\u2028\u2029") & set(text) and json.loads(text) == hostile


def test_build_rejects_a_manifest_naming_missing_files(study_inputs, tmp_path, capsys):
    (study_inputs / "m2.csv").write_text("method,video,prompt\nA,nope.mp4,x\n")
    assert main(["study", "build", "--manifest", str(study_inputs / "m2.csv"), "--out", str(tmp_path / "s")]) == 2
    assert "line 2: video" in capsys.readouterr().err


class Served:
    """A loopback static server of one folder, as `python -m http.server --directory DIR` serves it."""

    def __init__(self, folder):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def chromium_context(p, profile):
    # a fresh profile: launch_persistent_context takes the --user-data-dir
    return p.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, accept_downloads=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"])


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_answer_a_hostile_study_in_headless_chromium(tmp_path):
    """Prompts and a title that try to break the page render every case; the key is not served; a complete
    rating saved by the page round-trips through tally."""
    sync_api = pytest.importorskip("playwright.sync_api")
    inputs = make_manifest(tmp_path / "in", HOSTILE_PROMPTS) if (tmp_path / "in").mkdir() is None else None
    out = tmp_path / "study"
    key = build(inputs, out, "--title", HOSTILE_TITLE)
    method_of = {cand: m for c in key["cases"] for cand, m in c["candidates"].items()}
    with Served(out / PAGE_DIR) as srv, sync_api.sync_playwright() as p:
        ctx = chromium_context(p, tmp_path / "profile")
        page = ctx.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{srv.url}/index.html")
        assert page.title() == HOSTILE_TITLE and page.text_content("h1") == HOSTILE_TITLE
        assert page.locator(".case").count() == 2 and errors == []
        shown = [t.replace("Prompt: ", "", 1) for t in page.locator(".case > p").all_text_contents()]
        assert shown == HOSTILE_PROMPTS
        # blinding: the key and the answers are not reachable from the served folder
        for path in ("/key.json", "/../key.json", "/answers/", "/%2e%2e/key.json"):
            assert page.request.get(srv.url + path).status == 404, path
        cands = page.locator(".cand")
        assert cands.count() == 6
        page.fill("#participant", "alice")
        page.click("#save")  # saving with nothing answered is refused
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
    answers = json.loads((out / "answers" / "alice.json").read_text())
    assert answers["participant"] == "alice" and answers["study_id"] == key["study_id"]
    summary, _ = tally([out / "answers" / "alice.json"])
    for m in METHODS:
        for q in QUESTIONS:
            assert summary[m][q]["mean"] == METHODS.index(m) + 2
            assert summary[m][q]["n"] == 1 and summary[m][q]["ratings"] == 2  # one participant, two cases
