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
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
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
    assert sorted(p.name for p in (tmp_path / "frames").iterdir() if not p.name.startswith(".")) == [
        "frame_0000.png", "frame_0001.png", "notes.txt"]
    # frames the user put there (their own clip's, by the same names) are never replaced nor removed
    mine = tmp_path / "mine"
    mine.mkdir()
    for i in (0, 7):
        Image.fromarray(np.full((4, 4, 3), 9 * i, np.uint8)).save(mine / f"frame_{i:04d}.png")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    with pytest.raises(SmraboothError, match="holds frame_0000.png, which smrabooth generate did not write"):
        save_frames(np.zeros((2, 4, 4, 3), np.uint8), mine)
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before


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


def test_a_metric_model_folder_that_is_not_there_is_a_missing_folder(tmp_path):
    from transformers import CLIPModel

    from smrabooth.metrics.common import ModelLoadError, load_pretrained

    with pytest.raises(ModelLoadError, match=r"cannot load the CLIP model .*nowhere/clip: no such folder"):
        load_pretrained(CLIPModel, str(tmp_path / "nowhere" / "clip"), "CLIP")


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


def test_records_of_another_shape_are_stale_or_recomputed_not_a_crash(tmp_path, capsys):
    """A lock, a model_index.json and a bench's results.json holding JSON of another shape (found by the fuzz test):
    a lock that is not a mapping is stale, an empty transformer_2 entry lists no second expert, and rows that are not
    a bench's are generated again."""
    from smrabooth.models.wan import check_wan_model_dir
    from smrabooth.train.lock import check_unlocked
    from smrabooth_sprites.report import finished_rows

    (tmp_path / ".lock").write_text("[1, 2]")
    check_unlocked(tmp_path)
    index = {"_class_name": "WanPipeline", "transformer_2": []}
    for sub in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        (tmp_path / sub).mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    check_wan_model_dir(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"settings": {}, "rows": [{"case": "c", "variant": []}]}))
    assert finished_rows(tmp_path, {"settings": {}}) == {}
    assert "results.json: its rows are not the rows a bench writes; every video is generated again" in \
        capsys.readouterr().out


@pytest.mark.parametrize("form", ["wan", "zeroscope"])
def test_a_pipeline_class_with_a_line_break_is_named_on_one_line(tmp_path, form):
    """Found by the fuzz test (2026-12-05): model_index.json naming "WanPipeli\\ne" made a two-line error."""
    from smrabooth.errors import SmraboothError
    from smrabooth.models.unet import check_zeroscope_model_dir
    from smrabooth.models.wan import check_wan_model_dir

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeli\ne"}))
    with pytest.raises(SmraboothError) as e:
        (check_wan_model_dir if form == "wan" else check_zeroscope_model_dir)(tmp_path)
    assert "\n" not in str(e.value) and "'WanPipeli\\ne'" in str(e.value)


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
    choices = [None, True, 0, -1, 10**30, 1.5, float("nan"), float("inf"), "x", "", [], [1, 2], {}]
    if depth < 3:
        choices += [{"study_id": "s", "ratings": [{"candidate": "c", "question": "q", "rating": 3}]},
                    {"step": rng.choice([1, "1", -1, None])}, [_random_json(rng, depth + 1)],
                    {"k": _random_json(rng, depth + 1)}]
    return rng.choice(choices)


def malformed(path: Path, original: bytes, rng: random.Random) -> bytes:
    """One malformed version of a valid file: its bytes mutated, or (JSON and YAML) a value of the wrong type or
    size in place of one of its own, or a document of random JSON."""
    structured = path.suffix in (".json", ".yaml") or path.name == ".lock"
    if path.suffix == ".safetensors" and rng.random() < 0.3:  # its metadata's JSON entries
        from safetensors.torch import save

        with safe_open_bytes(original) as (f, tensors):
            metadata = dict(f.metadata() or {})
        for key in [k for k in metadata if k != "format"]:
            metadata[key] = malformed(Path(f"{key}.json"), metadata[key].encode(), rng).decode("utf-8", "replace")
        return save(tensors, metadata=metadata)
    if structured and rng.random() < 0.35:
        try:
            value = json.loads(original) if path.suffix != ".yaml" else yaml.safe_load(original)
        except ValueError:
            value = None
        if isinstance(value, dict) and value and rng.random() < 0.7:
            entry = value
            while True:  # a value somewhere down the tree of mappings and lists
                key = rng.choice(list(entry)) if isinstance(entry, dict) else rng.randrange(len(entry))
                if not isinstance(entry[key], (dict, list)) or not entry[key] or rng.random() < 0.3:
                    break
                entry = entry[key]
            entry[key] = _random_json(rng)
        else:
            value = _random_json(rng)
        return (yaml.safe_dump(value) if path.suffix == ".yaml" else json.dumps(value)).encode()
    return _mutations(original, rng)


@contextmanager
def safe_open_bytes(data: bytes):
    """A safetensors file's (reader, tensors) from its bytes."""
    import tempfile

    from safetensors import safe_open

    with tempfile.NamedTemporaryFile(suffix=".safetensors") as tmp:
        tmp.write(data)
        tmp.flush()
        with safe_open(tmp.name, framework="pt") as f:
            yield f, {k: f.get_tensor(k) for k in f.keys()}


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
    later_files(root, tensors)
    return root


def later_files(root: Path, tensors: dict) -> None:
    """The seeds of the readers added since the fuzz test was written: Wan2.2 and ZeroScope model folders, a
    per-expert LoRA, a training config of the official recipe, a run folder's records, a study key, a SEA-RAFT
    config and an SMRA-Sprites bundle's sprites.json and a bench's results.json."""
    from smrabooth.lora.files import LoraWeights, save_lora

    a14b = {"_class_name": "WanPipeline", "boundary_ratio": 0.875, "expand_timesteps": False,
            **{sub: ["diffusers", "X"] for sub in ("scheduler", "text_encoder", "tokenizer", "transformer",
                                                   "transformer_2", "vae")}}
    zeroscope = {"_class_name": "TextToVideoSDPipeline",
                 **{sub: ["diffusers", "X"] for sub in ("scheduler", "text_encoder", "tokenizer", "unet", "vae")}}
    for name, index in (("wan22", a14b), ("zeroscope", zeroscope)):
        for sub in index:
            if not sub.startswith("_") and isinstance(index[sub], list):
                (root / name / sub).mkdir(parents=True, exist_ok=True)
        (root / name / "model_index.json").write_text(json.dumps(index))
    save_lora(root / "subject_lora_high.safetensors", LoraWeights(tensors, 2, 2.0, {"kind": "subject", "expert": "high",
                                                                                   "recipe": "official"}))
    (root / "train.yaml").write_text("recipe: official\nexpert: high\nsteps: 3\nrank: 4\nlayer_types: [q, k, ffn.0]\n"
                                     "extra: {a: 1}\n")
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: /m\ndata: /d\nout: /o\nrecipe: official\nsteps: 2\nrank: 4\n")
    (run / "inputs.json").write_text(json.dumps({"files": {str(root / "v.mp4"): "0" * 64}}))
    (run / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "start": None, "since": "2026"}))
    (run / "parallel.json").write_text(json.dumps({"effective_batch": 1, "calls": [{"from_step": 0}]}))
    (root / "digests.json").write_text(json.dumps({str(root / "model" / "w.bin"): [7, 0, "ab"]}))
    (root / "key.json").write_text(json.dumps({"study_id": "s", "methods": ["ours"], "cases": [
        {"candidates": {"c": "ours"}}]}))
    (root / "searaft").mkdir()
    (root / "searaft" / "config.json").write_text(json.dumps({"pretrain": "resnet18", "initial_dim": 8,
                                                              "block_dims": [8, 12, 16], "radius": 2, "dim": 16,
                                                              "num_blocks": 1, "iters": 2, "scale": 0}))
    (root / "bundle").mkdir()
    (root / "bundle" / "sprites.json").write_text(json.dumps({"preset": "small", "config": {"size": 64, "frames": 9,
                                                                                            "fps": 15}}))
    (root / "bench").mkdir()
    (root / "bench" / "results.json").write_text(json.dumps({"settings": {"a": 1}, "rows": [
        {"case": "heart-spiral", "variant": "full", "seed": 0, "video": str(root / "v.mp4")}]}))


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
        **later_readers(root),
    }


def later_readers(root: Path):
    """The readers of `later_files`' seeds."""
    from argparse import Namespace

    from smrabooth.backbones import backbone_for_lora_file, backbone_for_model
    from smrabooth.cli.common import config_from_args
    from smrabooth.data.cache import model_digest
    from smrabooth.lora.files import load_lora, recorded_recipe
    from smrabooth.metrics.study import tally
    from smrabooth.models.searaft import _read_config
    from smrabooth.sampling import place_loras
    from smrabooth.train.common import check_inputs, saved_settings
    from smrabooth.train.distributed import DataParallel
    from smrabooth.train.lock import check_unlocked
    from smrabooth.train.subject import SubjectTrainConfig
    from smrabooth_sprites.experiment import ExperimentSettings, settings_for_bundle
    from smrabooth_sprites.report import finished_rows

    def model_folder(name):
        backbone_for_model(root / name).check_folder(root / name)

    def expert_lora():
        path = root / "subject_lora_high.safetensors"
        recorded_recipe(path)
        backbone_for_lora_file(path)
        place_loras(("high", "low"), "subject", [load_lora(path)], paths=[str(path)])

    run = root / "run"
    return {
        "Wan2.2 model_index.json": (root / "wan22" / "model_index.json", lambda: model_folder("wan22")),
        "ZeroScope model_index.json": (root / "zeroscope" / "model_index.json", lambda: model_folder("zeroscope")),
        "per-expert LoRA": (root / "subject_lora_high.safetensors", expert_lora),
        "training config YAML": (root / "train.yaml", lambda: config_from_args(
            SubjectTrainConfig, Namespace(config=str(root / "train.yaml")))),
        "run config.yaml": (run / "config.yaml", lambda: saved_settings(SubjectTrainConfig(), run).validate()),
        "inputs.json": (run / "inputs.json", lambda: check_inputs(run, [root / "v.mp4"], resume=True)),
        "lock": (run / ".lock", lambda: check_unlocked(run)),
        "parallel.json": (run / "parallel.json", lambda: DataParallel(processes=1, batch_size=1).record(run, 1)),
        "digests.json": (root / "digests.json", lambda: model_digest(str(root / "model"), (), root)),
        "study key": (root / "key.json", lambda: tally([root / "answers.json"], root / "key.json")),
        "SEA-RAFT config": (root / "searaft" / "config.json", lambda: _read_config(root / "searaft" / "config.json")),
        "bundle sprites.json": (root / "bundle" / "sprites.json", lambda: settings_for_bundle(
            ExperimentSettings(model=str(root / "bundle")))),
        "bench results.json": (root / "bench" / "results.json", lambda: finished_rows(root / "bench",
                                                                                        {"settings": {"a": 1}})),
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
            data = malformed(path, originals[name], rng)
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
