"""Files as users have them: every reader turns a malformed file into one line naming it (src/smrabooth/readers.py),
legal but odd files are read right (16-bit and palette PNGs, a BOM, Latin-1, exact frame rates), damaged caches and
checkpoints are recomputed or skipped, and a fuzz test feeds random malformed files to every reader.

Table rows of the CLI's one-line errors are in test_robustness.py (CASES); the data-loss cases of --overwrite in
test_data_loss.py.
"""

import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from smrabooth.cli import main
from smrabooth.errors import SmraboothError


# ---------------------------------------------------------------- images
def test_16bit_and_palette_pngs_are_converted_exactly(tmp_path):
    from smrabooth.data.folders import load_image, load_mask

    ramp = (np.arange(64, dtype=np.uint32)[None, :].repeat(8, 0) * 1024).astype(np.uint16)  # 0 .. 64512
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb = np.asarray(load_image(tmp_path / "g16.png"))
    assert rgb.shape == (8, 64, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])
    assert np.array_equal(rgb[0, :, 0], np.round(ramp[0] / 65535 * 255).astype(np.uint8))  # not a flat white image
    mask16 = np.zeros((8, 64), np.uint16)
    mask16[:, :32] = 65535
    Image.fromarray(mask16).save(tmp_path / "m16.png")
    assert load_mask(tmp_path / "m16.png")[:, :32].all() and not load_mask(tmp_path / "m16.png")[:, 32:].any()
    pal = Image.new("P", (4, 2))
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    pal.putdata([0, 1, 2, 1, 1, 2, 0, 0])
    pal.save(tmp_path / "p.png")
    assert np.asarray(load_image(tmp_path / "p.png"))[0].tolist() == [[0, 0, 0], [255, 0, 0], [0, 0, 255],
                                                                      [255, 0, 0]]


def test_a_huge_or_broken_image_is_one_line(tmp_path):
    from test_robustness import png_header

    from smrabooth.readers import read_image_rgb

    (tmp_path / "huge.png").write_bytes(png_header(30000, 30000))
    with pytest.raises(SmraboothError, match="huge.png has more pixels than smrabooth reads"):
        read_image_rgb(tmp_path / "huge.png")
    Image.new("RGB", (40, 40), (9, 9, 9)).save(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    with pytest.raises(SmraboothError, match="cut.png is not a readable image"):
        read_image_rgb(tmp_path / "cut.png")


# ---------------------------------------------------------------- text files
def test_bom_latin1_and_shapes_of_tables(tmp_path, capsys):
    from smrabooth.cli.evaluate import read_manifest, read_prompts
    from smrabooth.data.folders import read_metadata
    from smrabooth.video import write_video

    (tmp_path / "metadata.csv").write_bytes("\ufefffile_name,text\r\na.png,a picture of V* café\r\n".encode())
    assert read_metadata(tmp_path / "metadata.csv").rows[0].text == "a picture of V* café"
    (tmp_path / "metadata.csv").write_bytes("file_name,text\na.png,a picture of V* café\n".encode("latin-1"))
    assert read_metadata(tmp_path / "metadata.csv").rows[0].text == "a picture of V* café"
    assert "is not UTF-8" in capsys.readouterr().err
    write_video(np.zeros((5, 32, 32, 3), np.uint8), tmp_path / "v.mp4", fps=8)
    (tmp_path / "m.csv").write_bytes("\ufeffmethod,video,prompt\nours,v.mp4,a dog\nours,v.mp4,a dog\n".encode())
    items = read_manifest(tmp_path / "m.csv")  # the BOM is not part of the first column's name
    assert [(i.method, i.video.name, i.prompt) for i in items] == [("ours", "v.mp4", "a dog")]
    assert "repeats line 2" in capsys.readouterr().err
    (tmp_path / "p.txt").write_bytes("un chien à la plage\n".encode("latin-1"))
    assert read_prompts(tmp_path / "p.txt", [tmp_path / "v.mp4"]) == ["un chien à la plage"]
    (tmp_path / "p.json").write_text('{"v.mp4": "a dog"}')
    assert read_prompts(tmp_path / "p.json", [tmp_path / "v.mp4"]) == ["a dog"]


# ---------------------------------------------------------------- settings
def test_numbers_typed_anywhere_are_checked_without_overflow():
    from smrabooth.validation import check_number, parse_number

    for text in ("²", "inf", "nan", "-inf", "1e400", "x", "", "1" + "0" * 400):
        with pytest.raises(SmraboothError, match=r"^steps"):
            parse_number("steps", text, 1, 100, integer=True)
    with pytest.raises(SmraboothError, match=r"401 digits"):
        check_number("--steps", 10**400, 1, 100, integer=True)
    with pytest.raises(SmraboothError, match=r"must be a whole number"):
        parse_number("steps", 2.5, 1, 100, integer=True)
    assert parse_number("steps", " 12 ", 1, 100, integer=True) == 12 and parse_number("lr", "1e-4", 0, 1) == 1e-4
    assert parse_number("steps", 12.0, 1, 100, integer=True) == 12


def test_web_app_fields_and_uploads(tmp_path):
    from smrabooth_ui import handlers
    from smrabooth_ui.workdir import Workdir

    for bad in ("²", "inf", float("nan"), 1e400, "-3"):
        with pytest.raises(SmraboothError, match="^steps"):
            handlers._positive(bad, "steps")
    wd = Workdir(tmp_path / "wd")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "dog 1.png").write_bytes(b"first")
    (a / "dog_1.png").write_bytes(b"second")
    (b / "dog_1.png").write_bytes(b"third")
    saved = wd.save_uploads([a / "dog 1.png", a / "dog_1.png", b / "dog_1.png", a / "dog_1.png"],
                            wd.root / "subjects" / "d" / "uploads")
    assert sorted(p.read_bytes() for p in saved) == [b"first", b"second", b"third"]  # none lost, none twice
    masks = wd.save_uploads([a / "dog 1.png", a / "dog_1.png"], wd.root / "subjects" / "d" / "masks")
    assert [p.name for p in masks] == [p.name for p in saved[:2]]  # a mask keeps its photo's name


def test_frame_rates_are_kept_exact_and_stale_frames_removed(tmp_path):
    from smrabooth.video import read_video, save_frames, write_video

    for fps in (23.976, 0.4, 29.97):
        write_video(np.zeros((3, 16, 16, 3), np.uint8), tmp_path / "v.mp4", fps)
        clip = read_video(tmp_path / "v.mp4")
        assert clip.fps == pytest.approx(fps, abs=1e-9) and clip.times[1] == pytest.approx(1 / fps, rel=1e-6)
    save_frames(np.zeros((5, 4, 4, 3), np.uint8), tmp_path / "frames")
    (tmp_path / "frames" / "notes.txt").write_text("mine")
    save_frames(np.zeros((2, 4, 4, 3), np.uint8), tmp_path / "frames")
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_0000.png", "frame_0001.png",
                                                                      "notes.txt"]


# ---------------------------------------------------------------- the boundary
def test_an_unexpected_error_is_one_line_unless_debugging(tmp_path, capsys, monkeypatch):
    from smrabooth.cli import tiny

    def broken(args):
        raise TypeError("'NoneType' object is not subscriptable")

    monkeypatch.setattr(tiny, "run", broken)
    assert main(["tiny-model", "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("smrabooth tiny-model: error: unexpected TypeError") and "--debug" in err
    with pytest.raises(TypeError):
        main(["tiny-model", "--out", str(tmp_path / "m"), "--debug"])
    monkeypatch.setenv("SMRABOOTH_DEBUG", "1")
    with pytest.raises(TypeError):
        main(["tiny-model", "--out", str(tmp_path / "m")])


def test_evaluate_with_local_models_makes_no_network_request(tmp_path, monkeypatch, capsys):
    import socket

    from smrabooth.video import write_video

    attempts = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("smrabooth.hub.is_offline", lambda: False)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: attempts.append(a) or pytest.fail("network"))
    write_video(np.zeros((5, 32, 32, 3), np.uint8), tmp_path / "v.mp4", fps=8)
    (tmp_path / "clip").mkdir()
    rc = main(["evaluate", "--videos", str(tmp_path / "v.mp4"), "--out", str(tmp_path / "ev"), "--metrics",
               "temporal_consistency", "--clip-model", str(tmp_path / "clip")])
    assert rc == 2 and "no metric could run" in capsys.readouterr().err  # the empty folder is no CLIP
    assert attempts == []


def test_a_damaged_model_folder_is_one_line(tiny_model_dir, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "vae" / "config.json").write_text('{"_class_name": "AutoencoderKLWan", "z_dim": "many"}')
    argv = ["generate", "--model", str(model), "--prompt", "a dog", "--frames", "5", "--height", "32", "--width",
            "32", "--steps", "1", "--out", str(tmp_path / "v.mp4")]
    assert main(argv) == 2
    err = capsys.readouterr().err  # the loaders' progress bars, then one line
    assert "Traceback" not in err and [ln for ln in err.splitlines() if "error:" in ln] == [
        next(ln for ln in err.splitlines() if "could not load the Wan model" in ln)]
    shutil.copy(tiny_model_dir / "vae" / "config.json", model / "vae" / "config.json")
    weights = next((model / "transformer").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and [ln for ln in err.splitlines() if "error:" in ln] == [
        next(ln for ln in err.splitlines() if "could not load the Wan model" in ln)]


# ---------------------------------------------------------------- caches and run records
def test_damaged_cache_entries_and_records_are_computed_again(tmp_path, capsys, monkeypatch):
    import safetensors.torch

    from smrabooth.data.cache import cached, model_digest
    from smrabooth.train.distributed import DataParallel

    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(6.0)}

    assert torch.equal(cached(tmp_path, "k", compute)["x"], torch.arange(6.0))
    entry = tmp_path / "k.safetensors"
    entry.write_bytes(entry.read_bytes()[:40])  # cut short by a full disk
    assert torch.equal(cached(tmp_path, "k", compute)["x"], torch.arange(6.0)) and len(calls) == 2
    assert "is damaged" in capsys.readouterr().err
    assert torch.equal(load_file(str(entry))["x"], torch.arange(6.0))  # written again whole
    monkeypatch.setattr(safetensors.torch, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "full")))
    assert torch.equal(cached(tmp_path, "k2", compute)["x"], torch.arange(6.0))  # the run goes on
    assert "could not write the cache entry" in capsys.readouterr().err and not list(tmp_path.glob(".k2*"))
    monkeypatch.undo()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"weights")
    first = model_digest(str(tmp_path / "model"), (), tmp_path)
    (tmp_path / "digests.json").write_text('{"a": ')
    assert model_digest(str(tmp_path / "model"), (), tmp_path) == first
    assert "digests.json is damaged" in capsys.readouterr().err
    (tmp_path / "parallel.json").write_text("[" * 5000)
    DataParallel(processes=1, batch_size=2).record(tmp_path, 3)
    assert json.loads((tmp_path / "parallel.json").read_text())["calls"][0]["from_step"] == 3
    assert "parallel.json is damaged" in capsys.readouterr().err


def subject_config(world_subject, tmp_path, **kw):
    from smrabooth.train.subject import SubjectTrainConfig

    base = {"model": "tiny", "data": str(world_subject), "out": str(tmp_path / "run"), "steps": 3, "rank": 4,
            "alpha": 4.0, "lr": 1e-3, "resolution": 32, "use_sura": False, "gradient_checkpointing": False,
            "checkpoint_every": 1, "save_dtype": "fp32", "cache_dir": str(tmp_path / "cache"), "batch_size": 1}
    return SubjectTrainConfig(**{**base, **kw})


def test_resume_skips_checkpoints_that_are_not_whole_and_finite(tiny_pipe, tmp_path, capsys):
    """A newest checkpoint missing half its LoRA tensors, all NaN, or whose state.json names another step is
    passed over for the one before it (no layer silently reset, no NaN resumed in a loop, no early end)."""
    from test_train_subject import make_subject_folder

    from smrabooth.train.common import list_checkpoints, read_log
    from smrabooth.train.subject import train_subject

    data = make_subject_folder(tmp_path / "data")
    cfg = subject_config(data, tmp_path)
    train_subject(cfg, tiny_pipe, model_id="tiny", progress=False)
    run = tmp_path / "run"
    damage = {
        "half": lambda f: save_file(dict(list(load_file(str(f / "lora.safetensors")).items())[::2]),
                                    str(f / "lora.safetensors")),
        "nan": lambda f: save_file({k: torch.full_like(v, math.nan) for k, v in
                                    load_file(str(f / "lora.safetensors")).items()}, str(f / "lora.safetensors")),
        "step": lambda f: (f / "state.json").write_text(json.dumps({"step": 999, "effective_batch": 1})),
    }
    steps = 3
    for what, hurt in damage.items():
        newest = list_checkpoints(run)[-1][1]
        hurt(newest)
        steps += 1
        train_subject(subject_config(data, tmp_path, steps=steps), tiny_pipe, model_id="tiny", resume=True,
                      progress=False)
        err = capsys.readouterr().err
        assert f"checkpoint {newest} is damaged" in err, what
        assert [r["step"] for r in read_log(run / "log.jsonl")] == list(range(1, steps + 1)), what
        assert list_checkpoints(run)[-1][0] == steps


def test_no_mask_ignores_a_black_mask(tmp_path):
    from test_train_subject import make_subject_folder

    from smrabooth.train.subject import read_subject_items

    data = make_subject_folder(tmp_path / "data")
    Image.fromarray(np.zeros((64, 80), np.uint8)).save(data / "masks" / "00.png")
    with pytest.raises(SmraboothError, match="is all black"):
        read_subject_items(subject_config(data, tmp_path))
    items = read_subject_items(subject_config(data, tmp_path, use_mask=False))
    assert [(p.name, m) for p, m, _ in items] == [("00.png", None)]


# ---------------------------------------------------------------- reproduce
def test_reproduce_hashes_files_read_outside_the_data_and_refuses_an_empty_report(tiny_model_dir, tmp_path):
    from test_train_motion import make_motion_folder
    from test_train_subject import make_subject_folder

    from smrabooth.reproduce import ReproduceConfig, plan, run

    data = tmp_path / "data"
    dog = make_subject_folder(data / "subject_customized" / "dog")
    shared = data / "subject_customized" / "shared"
    shared.mkdir()
    shutil.copy(dog / "images" / "00.png", shared / "00.png")
    (dog / "metadata.csv").write_text("video,mask,prompt\nshared/00.png,masks/00.png,a picture of sks dog\n")
    make_motion_folder(data / "motion_customized" / "video" / "glide", n_frames=12)
    from smrabooth.models.dinov2 import build_tiny_dinov2

    build_tiny_dinov2().save_pretrained(tmp_path / "dino")  # the plan checks every job's settings, --encoder too
    cfg = ReproduceConfig(data=str(data), model=str(tiny_model_dir), out=str(tmp_path / "exp"), methods=("no_mora",),
                          seeds=(0,), offline=True, recipe="paper",
                          subject_args=f"--steps 1 --resolution 32 --encoder {tmp_path / 'dino'}",
                          motion_args="--steps 1 --frames 5 "
                          "--height 32 --width 32", generate_args="--frames 5 --height 32 --width 32")
    spec = next(j.spec for j in plan(cfg) if j.kind == "subject")
    photo(shared / "00.png")
    again = next(j.spec for j in plan(cfg) if j.kind == "subject")
    assert spec["data"] == again["data"] and spec["outside"] != again["outside"]  # the LoRA is not done any more
    with pytest.raises(SmraboothError, match="--stage report: 1 of 1 evaluations are not done"):
        run(cfg, stage="report")


def photo(path):
    Image.fromarray(np.full((64, 80, 3), 77, np.uint8)).save(path)


# ---------------------------------------------------------------- fuzz
def _mutations(data: bytes, rng: random.Random):
    """Malformed versions of a valid file: cut short, bytes flipped, junk inserted, emptied, or random bytes."""
    kind = rng.randrange(6)
    if kind == 0 or not data:
        return data[: rng.randrange(len(data) + 1)] if data else bytes(rng.randrange(256) for _ in range(20))
    if kind == 1:
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 2:
        i = rng.randrange(len(data) + 1)
        junk = rng.choice([b",", b'"', b"\n", b"\x00", b"[" * 200, b"{", b"&a *a", b"\xff\xfe", b"1e999", b"-",
                           b"\\", "é".encode("latin-1"), b"..", b"- - -", b": :"])
        return data[:i] + junk + data[i:]
    if kind == 3:
        return b""
    if kind == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    return data + data[: rng.randrange(len(data) + 1)]  # a second copy, cut short


def _random_json(rng: random.Random, depth: int = 0):
    choices = [None, True, 0, -1, 10**30, 1.5, float("nan"), "x", "", [1, 2]]
    if depth < 3:
        choices += [{"study_id": "s", "ratings": [{"candidate": "c", "question": "q", "rating": 3}]},
                    {"step": rng.choice([1, "1", -1, None])}, [_random_json(rng, depth + 1)],
                    {"k": _random_json(rng, depth + 1)}]
    return rng.choice(choices)


@pytest.fixture(scope="module")
def fuzz_files(tmp_path_factory):
    """One valid file for each reader, as the seed of its malformed versions."""
    from test_train_subject import make_subject_folder

    from smrabooth.lora.files import LoraWeights, save_lora
    from smrabooth.video import write_video

    root = tmp_path_factory.mktemp("fuzz")
    make_subject_folder(root / "subject")
    write_video(np.full((5, 32, 32, 3), 80, np.uint8), root / "v.mp4", fps=8)
    tensors = {"blocks.0.attn1.to_q.lora_A.weight": torch.randn(2, 8), "blocks.0.attn1.to_q.lora_B.weight":
               torch.randn(8, 2)}
    save_lora(root / "lora.safetensors", LoraWeights(tensors, 2, 2.0, {"kind": "subject"}))
    save_file({"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.randn(2, 8),
               "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.randn(8, 2)},
              str(root / "unet.safetensors"), metadata={"smrabooth": '{"alpha": 2, "kind": "subject"}'})
    (root / "config.yaml").write_text("steps: 3\nguidance: 5.0\nnegative_prompt: blurry\nsubject_layers: q,k\n")
    (root / "prompts.json").write_text('{"v.mp4": "a dog"}')
    (root / "manifest.csv").write_text("method,video,prompt\nours,v.mp4,a dog\n")
    (root / "answers.json").write_text(json.dumps({"study_id": "s", "participant": "p", "ratings": [
        {"candidate": "c", "question": "q", "rating": 3}]}))
    (root / "state.json").write_text('{"step": 2, "effective_batch": 1}')
    from smrabooth.data.cache import cached

    cached(root / "cache", "k", lambda: {"x": torch.zeros(2)})
    return root


def _readers(root: Path):
    """reader name -> (the file it reads, a call reading it)."""
    from smrabooth.cli.evaluate import read_manifest, read_prompts
    from smrabooth.config import apply_dict, read_yaml
    from smrabooth.data.cache import cached
    from smrabooth.data.folders import load_image, load_mask, read_metadata, read_subject_folder
    from smrabooth.lora.files import load_lora
    from smrabooth.lora.unet import load_unet_lora
    from smrabooth.metrics.study import load_answers
    from smrabooth.models.wan import check_wan_model_dir
    from smrabooth.run_folder import read_marker
    from smrabooth.sampling import GenerateConfig
    from smrabooth.train.common import read_checkpoint_state
    from smrabooth.train.state import read_log
    from smrabooth.video import read_video

    sub = root / "subject"
    ckpt = root / "checkpoints" / "step-2"
    ckpt.mkdir(parents=True, exist_ok=True)
    (root / "model").mkdir(exist_ok=True)
    return {
        "metadata.csv": (sub / "metadata.csv", lambda: read_subject_folder(sub)),
        "metadata.csv (table)": (sub / "metadata.csv", lambda: read_metadata(sub / "metadata.csv")),
        "image": (sub / "images" / "00.png", lambda: load_image(sub / "images" / "00.png")),
        "mask": (sub / "masks" / "00.png", lambda: load_mask(sub / "masks" / "00.png")),
        "config YAML": (root / "config.yaml", lambda: apply_dict(GenerateConfig(), read_yaml(root / "config.yaml"),
                                                                 "c").validate()),
        "LoRA": (root / "lora.safetensors", lambda: load_lora(root / "lora.safetensors")),
        "U-Net LoRA": (root / "unet.safetensors", lambda: load_unet_lora(root / "unet.safetensors")),
        "prompts": (root / "prompts.json", lambda: read_prompts(root / "prompts.json", [root / "v.mp4"])),
        "manifest": (root / "manifest.csv", lambda: read_manifest(root / "manifest.csv")),
        "answers": (root / "answers.json", lambda: load_answers([root / "answers.json"])),
        "state.json": (ckpt / "state.json", lambda: read_checkpoint_state(ckpt)),
        "run marker": (root / ".smrabooth.json", lambda: read_marker(root)),
        "log.jsonl": (root / "log.jsonl", lambda: read_log(root / "log.jsonl")),
        "model_index.json": (root / "model" / "model_index.json", lambda: check_wan_model_dir(root / "model")),
        "cache entry": (root / "cache" / "k.safetensors", lambda: cached(root / "cache", "k",
                                                                         lambda: {"x": torch.zeros(2)})),
        "video": (root / "v.mp4", lambda: read_video(root / "v.mp4")),
    }


SEEDS = {"state.json": b'{"step": 2, "effective_batch": 1}', "run marker": b'{"command": "demo", "files": []}',
         "log.jsonl": b'{"step": 1, "flow": 0.5}\n{"step": 2, "flow": 0.4}\n',
         "model_index.json": b'{"_class_name": "WanPipeline"}'}


def test_fuzz_every_reader_gives_a_result_or_one_line(fuzz_files, capsys):
    """Random malformed files (seeded) for every reader, for a few seconds in all: each call returns, or raises
    SmraboothError with a one-line message naming the file. Anything else (a traceback) fails, with the case."""
    rng = random.Random(int(os.environ.get("SMRABOOTH_FUZZ_SEED", "34")))  # longer hunts: set both variables
    readers = _readers(fuzz_files)
    originals = {name: SEEDS.get(name) or path.read_bytes() for name, (path, _) in readers.items()
                 if name in SEEDS or path.is_file()}
    budget = time.monotonic() + float(os.environ.get("SMRABOOTH_FUZZ_SECONDS", "4"))
    tried = dict.fromkeys(readers, 0)
    while time.monotonic() < budget:
        for name, (path, read) in readers.items():
            if name not in originals:
                continue
            if rng.random() < 0.2 and path.suffix in (".json", ".yaml"):
                value = _random_json(rng)
                data = (json.dumps(value) if path.suffix == ".json" else f"steps: {json.dumps(value)}\n").encode()
            else:
                data = _mutations(originals[name], rng)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            try:
                read()
            except SmraboothError as e:
                message = str(e)
                assert message and "\n" not in message.strip() and len(message) < 2000, (name, data[:200], message)
            except Exception as e:  # noqa: BLE001  (the point: nothing else may escape)
                pytest.fail(f"{name}: {type(e).__name__}: {e} for the file {data[:300]!r}")
            finally:
                path.write_bytes(originals[name])
                capsys.readouterr()
            tried[name] += 1
    print(tried)
    assert all(n >= 5 for n in tried.values()), tried  # every reader had its share
