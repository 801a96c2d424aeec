"""`smrabooth evaluate`: inputs, manifest, table and reports for two fake methods, and bad input."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from smrabooth.cli import build_parser, main
from smrabooth.cli.evaluate import run as run_evaluate
from smrabooth.metrics.clip_metrics import clip_t, load_clip
from smrabooth.metrics.report import format_table, mean_ci, summarize
from smrabooth.metrics.tiny import build_tiny_metric_models
from smrabooth.metrics.tracking import FlowTracker
from smrabooth.video import read_video, write_video


def smooth(f, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(f, 3, 4, 5, generator=g), size=(h, w), mode="bilinear", align_corners=False)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def shift_flow(image1, image2):  # a trivial exact "flow": constant one-pixel shift to the right
    b, _, h, w = image1.shape
    f = torch.zeros(b, 2, h, w)
    f[0, 0], f[1, 0] = 1.0, -1.0
    return f


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    models = build_tiny_metric_models(root / "models")
    (root / "subj").mkdir()
    for k in range(2):
        Image.fromarray(smooth(1, 36, 36, 50 + k)[0]).save(root / "subj" / f"img{k}.png")
    write_video(smooth(6, 32, 40, 99), root / "motion.mp4", fps=8)
    rows = []
    for m, method in enumerate(["baseline", "ours"]):
        for i, prompt in enumerate(["a dog on grass", "a cat in snow"]):
            name = f"{method}_{i}.mp4"
            write_video(smooth(6, 32, 40, 10 * m + i), root / name, fps=8)
            rows.append({"method": method, "video": name, "prompt": prompt, "subject_images": "subj",
                         "reference_video": "motion.mp4"})
    with open(root / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root, models


def model_args(models):
    return ["--clip-model", str(models["clip"]), "--dino-model", str(models["dino"]),
            "--subject-model", str(models["dino_v1"]), "--pickscore-model", str(models["pickscore"]),
            "--pickscore-processor", str(models["pickscore"]), "--aesthetic-clip-model", str(models["aesthetic_clip"]),
            "--aesthetic-head", str(models["aesthetic_head"]), "--device", "cpu", "--offline", "--batch-size", "4"]


def test_manifest_table_and_reports_for_two_methods(exp, tmp_path, capsys):
    root, models = exp
    out = tmp_path / "report"
    args = build_parser().parse_args(["evaluate", "--manifest", str(root / "runs.csv"), "--out", str(out),
                                      "--mf-grid", "6", "--mf-box", "2,2,30,30", *model_args(models)])
    assert run_evaluate(args, tracker=FlowTracker(shift_flow, device="cpu")) == 0
    printed = capsys.readouterr().out
    assert "baseline" in printed and "ours" in printed and "CLIP-T" in printed and "mf_variant=released" in printed
    res = json.loads((out / "results.json").read_text())
    # imaging needs pyiqa (not installed here): skipped with a reason, the other eight ran
    assert set(res["skipped"]) == ({"imaging"} if not _has_pyiqa() else set())
    assert list(res["summary"]) == ["baseline", "ours"]
    assert len(res["videos"]) == 4 and res["settings"]["clip_model"] == str(models["clip"])
    assert res["settings"]["tracker_used"] == "caller-supplied" and res["failed"] == {}
    # every point of every video moves exactly like the reference under this flow (one shared motion)
    assert all(v["motion_fidelity"] == pytest.approx(100.0) and v["tracker"] == "caller-supplied"
               for v in res["videos"])
    assert res["trackers"] == {"baseline": "caller-supplied", "ours": "caller-supplied"}
    # the reported CLIP-T is the metric on the decoded video, and the table is mean and t-interval of those
    emb = load_clip(str(models["clip"]), device="cpu", local_files_only=True)
    vals = [clip_t(emb, read_video(root / f"ours_{i}.mp4").frames, p) for i, p in enumerate(["a dog on grass",
                                                                                              "a cat in snow"])]
    got = [v["clip_t"] for v in res["videos"] if v["method"] == "ours"]
    assert got == pytest.approx(vals, abs=1e-6)
    assert res["summary"]["ours"]["clip_t"]["mean"] == pytest.approx(np.mean(vals), abs=1e-6)
    # the tracker is a column of every table
    with open(out / "per_video.csv") as f:
        per_video = list(csv.DictReader(f))
        assert len(per_video) == 4 and {r["tracker"] for r in per_video} == {"caller-supplied"}
    with open(out / "table.csv") as f:
        assert [(r["method"], r["tracker"]) for r in csv.DictReader(f)] == [("baseline", "caller-supplied"),
                                                                           ("ours", "caller-supplied")]
    table = (out / "table.txt").read_text().splitlines()
    assert table[0].split()[:2] == ["method", "tracker"] and table[2].split()[:2] == ["baseline", "caller-supplied"]
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 8 and page.count("data:image/jpeg;base64,") == 4  # strips, as video posters
    assert page.count("<video") == 4 and page.count("src='data:video/mp4;base64,") == 4
    assert "id='summary'" in page and "tracker: caller-supplied" in page
    assert "<b>Imaging Quality</b> skipped" in page or _has_pyiqa()


def _has_pyiqa():
    try:
        import pyiqa  # noqa: F401
        return True
    except Exception:
        return False


def test_files_form_with_prompts_and_a_model_that_cannot_load(exp, tmp_path, capsys):
    root, models = exp
    (tmp_path / "p.json").write_text(json.dumps({"ours_0": "a dog on grass", "ours_1.mp4": "a cat in snow"}))
    out = tmp_path / "r"
    args = model_args(models)
    args[args.index("--dino-model") + 1] = str(tmp_path / "no-such-model")
    rc = main(["evaluate", "--videos", str(root / "ours_0.mp4"), str(root / "ours_1.mp4"), "--out", str(out),
               "--prompts", str(tmp_path / "p.json"), "--subject-images", str(root / "subj"),
               "--metrics", "clip_t,clip_i,dino_i,temporal_consistency", *args])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "warning: skipping DINO-I" in printed and "no-such-model" in printed
    res = json.loads((out / "results.json").read_text())
    assert list(res["skipped"]) == ["dino_i"]
    assert all(v["clip_i"] is not None and v["dino_i"] is None for v in res["videos"])


def test_mean_ci_is_the_t_interval():
    s = mean_ci([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["half_width"] == pytest.approx(4.302652729911275 / np.sqrt(3))
    assert mean_ci([5.0])["half_width"] == 0.0 and mean_ci([])["mean"] is None


def test_format_table_as_text_and_markdown():
    rows = [{"method": "a", "dino_i": 0.5, "x": 1.0}, {"method": "a", "dino_i": 0.7, "x": None},
            {"method": "b", "dino_i": 0.25, "x": None}]
    summary = summarize(rows, ["dino_i", "x"])
    hw = mean_ci([0.5, 0.7])["half_width"]
    md = format_table(summary, ["dino_i", "x"], labels={"dino_i": "DINO-I"}, markdown=True, digits=lambda c: 2)
    assert md.splitlines() == ["| method | n | DINO-I | x |", "| --- | ---: | ---: | ---: |",
                               f"| a | 2 | 0.60 ± {hw:.2f} | 1.00 ± 0.00 |", "| b | 1 | 0.25 ± 0.00 | - |"]
    text = format_table(summary, ["dino_i", "x"], labels={"dino_i": "DINO-I"}).splitlines()
    assert text[0].split() == ["method", "DINO-I", "x"] and text[2].split()[:4] == ["a", "0.600", "±", f"{hw:.3f}"]
    assert text[3].split() == ["b", "0.250", "±", "0.000", "-"]


@pytest.mark.parametrize("case", ["unreadable", "missing_in_manifest", "clip_i_without_images", "unknown_metric"])
def test_bad_input_gives_one_clear_error(exp, tmp_path, capsys, case):
    root, models = exp
    out = str(tmp_path / "o")
    if case == "unreadable":
        (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
        argv = ["--videos", str(tmp_path / "broken.mp4"), "--metrics", "temporal_consistency"]
        want = "broken.mp4 is not a readable video"
    elif case == "missing_in_manifest":
        (tmp_path / "m.csv").write_text("method,video,prompt\nours,ours_0.mp4,a\nours,gone.mp4,b\n")
        (tmp_path / "ours_0.mp4").write_bytes((root / "ours_0.mp4").read_bytes())
        argv = ["--manifest", str(tmp_path / "m.csv")]
        want = "line 3: video"
    elif case == "clip_i_without_images":
        argv = ["--videos", str(root / "ours_0.mp4"), "--metrics", "clip_i"]
        want = "CLIP-I needs subject images"
    else:
        argv = ["--videos", str(root / "ours_0.mp4"), "--metrics", "clip_t,fvd"]
        want = "unknown metric(s) fvd"
    assert main(["evaluate", *argv, "--out", out, *model_args(models)]) == 2
    err = capsys.readouterr().err
    assert want in err and "Traceback" not in err


def test_a_failing_metric_keeps_the_others_and_sets_the_exit_status(exp, tmp_path, capsys):
    root, models = exp
    write_video(smooth(4, 32, 40, 1), tmp_path / "short.mp4", fps=8)

    def tracker(frames, queries):  # fails like the built-in tracker on a video it cannot take
        if frames.shape[0] == 4:
            raise RuntimeError("the video is smaller than 128 px")
        return FlowTracker(shift_flow, device="cpu")(frames, queries)

    out = tmp_path / "o"
    # two videos: ours_0 against a reference of another length (bad input for that pair), ours_1 fine; the
    # manifest form gives each its own reference
    (tmp_path / "m.csv").write_text(f"method,video,prompt,reference_video\nours,{root / 'ours_0.mp4'},a,"
                                    f"{tmp_path / 'short.mp4'}\nours,{root / 'ours_1.mp4'},b,{root / 'motion.mp4'}\n")
    args = build_parser().parse_args(["evaluate", "--manifest", str(tmp_path / "m.csv"), "--out", str(out),
                                      "--metrics", "temporal_consistency,motion_fidelity", "--mf-grid", "5",
                                      *model_args(models)])
    assert run_evaluate(args, tracker=tracker) == 1  # one metric failed
    printed = capsys.readouterr().out
    assert "failed Motion Fidelity on 1 of 2 videos (first: ours_0.mp4: motion fidelity compares" in printed
    res = json.loads((out / "results.json").read_text())
    assert list(res["failed"]) == ["motion_fidelity"]
    assert "the reference has only 4" in res["failed"]["motion_fidelity"][str(root / "ours_0.mp4")]
    assert all(v["temporal_consistency"] is not None for v in res["videos"])
    assert [v["motion_fidelity"] is None for v in res["videos"]] == [True, False]
    assert res["summary"]["ours"]["motion_fidelity"]["n"] == 1
    page = (out / "report.html").read_text()
    assert "<b>Motion Fidelity</b> failed on 1 video(s)" in page and "failed on 1 video(s)" in page
    # a runtime error inside the tracker is recorded the same way, with its type
    (tmp_path / "m2.csv").write_text(f"method,video,reference_video\nours,{root / 'ours_0.mp4'},{root / 'motion.mp4'}\n"
                                     f"ours,{tmp_path / 'short.mp4'},{tmp_path / 'short.mp4'}\n")
    args.manifest, args.out = str(tmp_path / "m2.csv"), str(tmp_path / "o2")
    assert run_evaluate(args, tracker=tracker) == 1
    res = json.loads((tmp_path / "o2" / "results.json").read_text())
    assert res["failed"]["motion_fidelity"] == {str(tmp_path / "short.mp4"):
                                                "RuntimeError: the video is smaller than 128 px"}
    # through the command line: the exit status is the number of failed metrics, the files are written
    capsys.readouterr()
    assert main(["evaluate", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o3"),
                 "--metrics", "temporal_consistency", *model_args(models)]) == 0
    assert (tmp_path / "o3" / "report.html").is_file()


def test_motion_fidelity_never_changes_tracker_silently(exp, tmp_path, capsys, monkeypatch):
    """Without CoTracker3 (none given, none cached) the metric is skipped with one line, the other metrics
    run and the exit status is 0; the SEA-RAFT tracker asked for by name without its model is a usage error."""
    root, models = exp
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    out = tmp_path / "o"
    assert main(["evaluate", "--manifest", str(root / "runs.csv"), "--out", str(out), "--mf-grid", "5",
                 "--metrics", "temporal_consistency,motion_fidelity", *model_args(models)]) == 0
    printed = capsys.readouterr().out
    skipped = [ln for ln in printed.splitlines() if ln.startswith("skipped Motion Fidelity")]
    assert len(skipped) == 1 and "CoTracker3" in skipped[0] and "--tracker searaft" in skipped[0]
    res = json.loads((out / "results.json").read_text())
    assert list(res["skipped"]) == ["motion_fidelity"] and res["settings"]["tracker_used"] is None
    assert all(v["temporal_consistency"] is not None and v["motion_fidelity"] is None for v in res["videos"])
    assert main(["evaluate", "--manifest", str(root / "runs.csv"), "--out", str(tmp_path / "o2"),
                 "--metrics", "motion_fidelity", "--tracker", "searaft", *model_args(models)]) == 2
    err = capsys.readouterr().err
    assert "--tracker searaft needs --searaft-model" in err and "Traceback" not in err


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_table_sorts_and_videos_play_in_chromium(exp, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    root, models = exp
    out = tmp_path / "report"
    args = build_parser().parse_args(["evaluate", "--manifest", str(root / "runs.csv"), "--out", str(out),
                                      "--metrics", "clip_t,temporal_consistency,motion_fidelity",
                                      "--mf-grid", "5", *model_args(models)])
    assert run_evaluate(args, tracker=FlowTracker(shift_flow, device="cpu")) == 0
    res = json.loads((out / "results.json").read_text())
    want = sorted(res["summary"], key=lambda m: res["summary"][m]["clip_t"]["mean"])
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        page = ctx.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "report.html").as_uri())
        methods = lambda: page.locator("#summary tbody tr td:first-child").all_text_contents()
        header = page.locator("#summary th", has_text="CLIP-T")
        header.click()
        assert methods() == want and header.get_attribute("aria-sort") == "ascending"
        header.click()
        assert methods() == want[::-1] and header.get_attribute("aria-sort") == "descending"
        page.locator("#summary th", has_text="method").click()
        assert methods() == sorted(want)
        # the per-video table sorts too, and the tracker is shown beside Motion Fidelity
        vheader = page.locator("#videos th", has_text="CLIP-T")
        vheader.click()
        vals = [float(v) for v in page.locator("#videos tbody tr td:nth-child(4)").all_text_contents()]
        assert vals == sorted(vals) and len(vals) == 4
        assert "tracker: caller-supplied" in page.text_content("#summary thead")
        # each row's video is embedded with its frame strip as the poster, and decodes where H.264 is built in
        video = page.locator("#videos video").first
        assert video.get_attribute("poster").startswith("data:image/jpeg;base64,")
        if page.evaluate("document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.640028\"')"):
            page.wait_for_function("document.querySelector('#videos video').readyState >= 1", timeout=10_000)
            assert page.evaluate("document.querySelector('#videos video').duration") > 0
        assert errors == []
        ctx.close()
