"""`smrabooth evaluate`: inputs, manifest, table and reports for two fake methods, and bad input."""

import csv
import json

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
    assert "baseline" in printed and "ours" in printed and "CLIP-T" in printed and "mf_variant=paper" in printed
    res = json.loads((out / "results.json").read_text())
    # imaging needs pyiqa (not installed here): skipped with a reason, the other eight ran
    assert set(res["skipped"]) == ({"imaging"} if not _has_pyiqa() else set())
    assert list(res["summary"]) == ["baseline", "ours"]
    assert len(res["videos"]) == 4 and res["settings"]["clip_model"] == str(models["clip"])
    assert res["settings"]["tracker_used"] == "caller-supplied"
    # every generated video moves exactly like the reference under this flow (box: points stay in frame)
    assert all(v["motion_fidelity"] == pytest.approx(100.0) for v in res["videos"])
    # the reported CLIP-T is the metric on the decoded video, and the table is mean and t-interval of those
    emb = load_clip(str(models["clip"]), device="cpu", local_files_only=True)
    vals = [clip_t(emb, read_video(root / f"ours_{i}.mp4").frames, p) for i, p in enumerate(["a dog on grass",
                                                                                              "a cat in snow"])]
    got = [v["clip_t"] for v in res["videos"] if v["method"] == "ours"]
    assert got == pytest.approx(vals, abs=1e-6)
    assert res["summary"]["ours"]["clip_t"]["mean"] == pytest.approx(np.mean(vals), abs=1e-6)
    with open(out / "per_video.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    with open(out / "table.csv") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["baseline", "ours"]
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 8 and page.count("data:image/jpeg;base64,") == 4
    assert "id='summary'" in page and "Imaging Quality" in page  # named among the skipped


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


@pytest.mark.parametrize("case", ["unreadable", "missing_in_manifest", "clip_i_without_images", "lengths",
                                  "unknown_metric"])
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
    elif case == "lengths":
        write_video(smooth(4, 32, 40, 1), tmp_path / "short.mp4", fps=8)
        argv = ["--videos", str(root / "ours_0.mp4"), "--reference-video", str(tmp_path / "short.mp4"),
                "--metrics", "motion_fidelity"]
        want = "has 6 frames and the reference 4"
    else:
        argv = ["--videos", str(root / "ours_0.mp4"), "--metrics", "clip_t,fvd"]
        want = "unknown metric(s) fvd"
    if case == "lengths":
        from smrabooth.errors import SmraboothError

        args = build_parser().parse_args(["evaluate", *argv, "--out", out, *model_args(models)])
        with pytest.raises(SmraboothError, match=want):
            run_evaluate(args, tracker=FlowTracker(shift_flow, device="cpu"))
        return
    assert main(["evaluate", *argv, "--out", out, *model_args(models)]) == 2
    err = capsys.readouterr().err
    assert want in err and "Traceback" not in err
