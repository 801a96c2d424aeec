"""Nothing is lost: `--overwrite` never deletes a command's input or a file it did not write, moves nothing before
every check has passed, and replaces a run only once the new one is complete (src/smrabooth/run_folder.py).

Every command with --overwrite is run on real folders through the CLI's main() in process; each test takes a
snapshot of the folder at stake (every file's bytes) and compares it after the refused or failed call.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smrabooth.cli import main

MARKER = ".smrabooth.json"  # smrabooth.run_folder.MARKER


def snapshot(folder) -> dict[str, bytes]:
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    err = out.err.strip()
    assert "Traceback" not in err
    return rc, err


def leftovers(folder) -> list[str]:
    """Staging or set-aside folders left next to `folder`."""
    folder = Path(folder)
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def photo(path, color=(200, 30, 30), size=(48, 40), disk=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[...] = color
    Image.fromarray(img).save(path)
    return path


def mask(path, size=(48, 40), black=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size[1], size[0]), np.uint8)
    if not black:
        m[10:30, 10:30] = 255
    Image.fromarray(m).save(path)
    return path


PS = ["prepare-subject", "--name", "dog", "--segmenter", "none"]


# ---------------------------------------------------------------- prepare-subject
def test_prepare_subject_never_deletes_the_photos_it_is_given(tmp_path, capsys):
    photos = tmp_path / "photos"
    photo(photos / "images" / "a.png")
    mask(photos / "masks" / "a.png")
    before = snapshot(photos)
    for extra in (["--overwrite"], []):
        rc, err = cli(capsys, *PS, photos / "images", "--masks", photos / "masks", "--out", photos, *extra)
        assert rc == 2 and f"--out {photos} holds the input" in err, err
        assert snapshot(photos) == before
    assert leftovers(photos) == []


def test_prepare_subject_overwrite_replaces_a_set_only_when_the_new_one_is_complete(tmp_path, capsys):
    out = tmp_path / "set"
    photo(tmp_path / "in" / "a.png")
    mask(tmp_path / "masks" / "a.png")
    assert cli(capsys, *PS, tmp_path / "in", "--masks", tmp_path / "masks", "--out", out)[0] == 0
    assert json.loads((out / MARKER).read_text())["command"] == "prepare-subject"
    before = snapshot(out)
    # a bad mask: refused before anything moved
    mask(tmp_path / "black" / "a.png", black=True)
    rc, err = cli(capsys, *PS, tmp_path / "in", "--masks", tmp_path / "black", "--out", out, "--overwrite")
    assert rc == 2 and "is all black" in err
    assert snapshot(out) == before and leftovers(out) == []
    # a file the command did not write
    (out / "notes.txt").write_text("mine")
    rc, err = cli(capsys, *PS, tmp_path / "in", "--out", out, "--overwrite")
    assert rc == 2 and "holds notes.txt, which smrabooth prepare-subject did not write" in err
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    # the new set replaces the old one (no masks this time)
    photo(tmp_path / "in2" / "b.png", color=(0, 200, 0))
    assert cli(capsys, *PS, tmp_path / "in2", "--out", out, "--overwrite")[0] == 0
    assert not (out / "masks").exists() and (out / "images" / "0001.png").is_file() and leftovers(out) == []
    assert np.asarray(Image.open(out / "images" / "0001.png"))[0, 0].tolist() == [0, 200, 0]
    # a set written before the marker existed: a clear line, nothing deleted
    (out / MARKER).unlink()
    before = snapshot(out)
    rc, err = cli(capsys, *PS, tmp_path / "in", "--out", out, "--overwrite")
    assert rc == 2 and "without smrabooth's marker" in err and f"rm -r {out}" in err
    assert snapshot(out) == before


# ---------------------------------------------------------------- prepare-motion
def test_prepare_motion_never_deletes_the_source_clip(tmp_path, capsys):
    from smrabooth.video import write_video

    folder = tmp_path / "clips"
    clip = write_video(np.full((6, 32, 32, 3), 90, np.uint8), folder / "clip.mp4", fps=8)
    before = clip.read_bytes()
    pm = ["prepare-motion", clip, "--name", "move", "--caption", "a ball S* moving", "--out", folder, "--fps", "8"]
    assert cli(capsys, *pm, "--overwrite")[0] == 0  # nothing to replace: written beside the clip
    assert clip.read_bytes() == before and (folder / "move_00.mp4").is_file()
    rc, err = cli(capsys, *pm, "--overwrite")  # now a set is there to replace, and the clip is inside it
    assert rc == 2 and "holds the input video" in err and clip.read_bytes() == before
    # the output would take the input's name
    named = write_video(np.full((6, 32, 32, 3), 90, np.uint8), tmp_path / "b" / "jump_00.mp4", fps=8)
    rc, err = cli(capsys, "prepare-motion", named, "--name", "jump", "--caption", "S*", "--out", named.parent)
    assert rc == 2 and "holds the input video" in err and named.is_file()


def test_prepare_motion_overwrite_with_a_broken_clip_keeps_the_old_set(tmp_path, capsys):
    from smrabooth.video import write_video

    clip = write_video(np.full((6, 32, 32, 3), 90, np.uint8), tmp_path / "clip.mp4", fps=8)
    out = tmp_path / "motion"
    pm = ["prepare-motion", "--name", "move", "--caption", "a ball S* moving", "--out", out, "--fps", "8"]
    assert cli(capsys, *pm[:1], clip, *pm[1:])[0] == 0
    before = snapshot(out)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:200])
    rc, err = cli(capsys, *pm[:1], broken, *pm[1:], "--overwrite")
    assert rc == 2 and "broken.mp4" in err
    assert snapshot(out) == before and leftovers(out) == []


# ---------------------------------------------------------------- train-subject, train-motion
TRAIN = ["train-subject", "--no-sura", "--resolution", "32", "--rank", "4", "--alpha", "4", "--steps", "1",
         "--checkpoint-every", "1", "--quiet", "--dtype", "fp32", "--no-gradient-checkpointing"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A finished subject run (one step), its data and cache, copied by each test."""
    from test_train_subject import make_subject_folder

    root = tmp_path_factory.mktemp("trained")
    data = make_subject_folder(root / "data")
    run = root / "run"
    assert main([*TRAIN, "--model", tiny_model_dir, "--data", data, "--out", run, "--cache-dir", root / "cache"]) == 0
    return root


def train_argv(model, data, run, *extra):
    return [*TRAIN, "--model", model, "--data", data, "--out", run, "--cache-dir", Path(run).parent / "cache", *extra]


def test_train_overwrite_refuses_a_folder_that_is_not_its_run(trained, tiny_model_dir, tmp_path, capsys):
    data = trained / "data"
    # any config.yaml is not a run: a folder of the user's files
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("steps: 3\n")
    (mine / "thesis.tex").write_text("years of work")
    rc, err = cli(capsys, *train_argv(tiny_model_dir, data, mine, "--overwrite"))
    assert rc == 2 and "without smrabooth's marker" in err and snapshot(mine) == {
        "config.yaml": b"steps: 3\n", "thesis.tex": b"years of work"}
    # the training data inside the run folder
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    shutil.copytree(data, run / "data")
    before = snapshot(run)
    rc, err = cli(capsys, *train_argv(tiny_model_dir, run / "data", run, "--overwrite"))
    assert rc == 2 and f"holds the input --data {run / 'data'}" in err and snapshot(run) == before
    # the model inside the run folder
    shutil.rmtree(run / "data")
    shutil.copytree(tiny_model_dir, run / "model")
    rc, err = cli(capsys, *train_argv(run / "model", data, run, "--overwrite"))
    assert rc == 2 and "holds the input --model" in err and (run / "model" / "model_index.json").is_file()
    # a file the trainer did not write
    shutil.rmtree(run / "model")
    (run / "notes.txt").write_text("mine")
    rc, err = cli(capsys, *train_argv(tiny_model_dir, data, run, "--overwrite"))
    assert rc == 2 and "holds notes.txt, which smrabooth train-subject did not write" in err
    assert (run / "notes.txt").read_text() == "mine"
    # a run of the other trainer
    (run / "notes.txt").unlink()
    marker = json.loads((run / MARKER).read_text())
    (run / MARKER).write_text(json.dumps({**marker, "command": "prepare-subject"}))
    rc, err = cli(capsys, *train_argv(tiny_model_dir, data, run, "--overwrite"))
    assert rc == 2 and "was written by smrabooth prepare-subject" in err
    # a run of an older smrabooth (no marker): a clear line, nothing deleted
    (run / MARKER).unlink()
    before = snapshot(run)
    rc, err = cli(capsys, *train_argv(tiny_model_dir, data, run, "--overwrite"))
    assert rc == 2 and "holds a training run without smrabooth's marker" in err and f"rm -r {run}" in err
    assert snapshot(run) == before and leftovers(run) == []


def test_train_overwrite_keeps_the_old_run_until_the_new_one_is_done(trained, tiny_model_dir, tmp_path, capsys):
    from test_train_subject import make_subject_folder

    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    before = snapshot(run)
    # a check that fails only once training has started (a mask found empty while reading the data)
    bad = make_subject_folder(tmp_path / "bad")
    Image.fromarray(np.zeros((64, 80), np.uint8)).save(bad / "masks" / "00.png")
    rc, err = cli(capsys, *train_argv(tiny_model_dir, bad, run, "--overwrite"))
    assert rc == 2 and "is all black" in err
    assert snapshot(run) == before and leftovers(run) == []
    # a setting checked against the model once it has loaded
    from smrabooth.models.dinov2 import build_tiny_dinov2

    build_tiny_dinov2().save_pretrained(tmp_path / "dino")
    sura = ["--sura", "--encoder", tmp_path / "dino", "--projector-width", "16", "--sura-layer", "99"]
    rc, err = cli(capsys, *train_argv(tiny_model_dir, trained / "data", run, "--overwrite", *sura))
    assert rc == 2 and "--sura-layer 99 is outside" in err
    assert snapshot(run) == before and leftovers(run) == []
    # a new run replaces it; the config names absolute paths and the files read are recorded
    data = make_subject_folder(tmp_path / "data", n=2)
    assert cli(capsys, *train_argv(tiny_model_dir, data, run, "--overwrite", "--seed", "5"))[0] == 0
    assert leftovers(run) == [] and not (run / ".lock").exists()
    assert "seed: 5" in (run / "config.yaml").read_text()
    assert f"data: {data.resolve()}" in (run / "config.yaml").read_text()
    files = json.loads((run / "inputs.json").read_text())["files"]
    assert str((data / "images" / "01.png").resolve()) in files and str((data / "metadata.csv").resolve()) in files


def test_train_motion_overwrite_never_deletes_its_clips(tiny_model_dir, tmp_path, capsys):
    from test_train_motion import make_motion_folder

    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_text(json.dumps({"command": "train-motion"}))
    (run / "config.yaml").write_text("steps: 1\n")
    data = make_motion_folder(run / "clips")
    before = snapshot(run)
    rc, err = cli(capsys, "train-motion", "--model", tiny_model_dir, "--data", data, "--out", run, "--overwrite",
                  "--frames", "9", "--height", "32", "--width", "32", "--window", "2", "--window-stride", "1",
                  "--drop-frames", "1")
    assert rc == 2 and "holds the input --data" in err and snapshot(run) == before


def test_resume_follows_the_data_not_the_words_naming_it(trained, tiny_model_dir, tmp_path, capsys, monkeypatch):
    """A run folder records absolute paths and the digests of what it read: the same folder by another path
    resumes; another folder by the same relative path, or changed data, is refused."""
    from test_train_subject import make_subject_folder

    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    shutil.copytree(trained / "data", tmp_path / "a" / "data")
    make_subject_folder(tmp_path / "b" / "data", n=2)
    monkeypatch.chdir(tmp_path / "a")
    assert cli(capsys, *train_argv(tiny_model_dir, "data", tmp_path / "x", "--steps", "1"))[0] == 0
    x = tmp_path / "x"
    # the same data by its absolute path: accepted
    assert cli(capsys, *train_argv(tiny_model_dir, (tmp_path / "a" / "data").resolve(), x, "--resume",
                                   "--steps", "2"))[0] == 0
    # the same relative path from another folder: another folder, refused
    monkeypatch.chdir(tmp_path / "b")
    rc, err = cli(capsys, *train_argv(tiny_model_dir, "data", x, "--resume", "--steps", "3"))
    assert rc == 2 and "was trained with data" in err
    # the data changed in place
    monkeypatch.chdir(tmp_path / "a")
    photo(tmp_path / "a" / "data" / "images" / "00.png", size=(80, 64))
    rc, err = cli(capsys, *train_argv(tiny_model_dir, "data", x, "--resume", "--steps", "3"))
    assert rc == 2 and "which has changed since" in err


# ---------------------------------------------------------------- lora convert, tiny-model
def test_lora_convert_overwrite_keeps_the_output_when_the_input_is_bad(tmp_path, capsys):
    good = tmp_path / "good.safetensors"
    good.write_bytes(b"keep me")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 40)
    rc, err = cli(capsys, "lora", "convert", bad, good, "--to", "comfyui", "--overwrite")
    assert rc == 2 and "not a readable safetensors LoRA file" in err and good.read_bytes() == b"keep me"


def test_tiny_model_never_leaves_half_a_model(tmp_path, capsys, monkeypatch):
    import safetensors.torch

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    rc, err = cli(capsys, "tiny-model", "--out", tmp_path / "full")
    assert rc == 2 and "not empty" in err and (tmp_path / "full" / "x").read_text() == "x"

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    rc, err = cli(capsys, "tiny-model", "--out", tmp_path / "m")
    assert rc == 2 and "No space left on device" in err and "nothing was left behind" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


# ---------------------------------------------------------------- the SMRA-Sprites demo, bench and bundles
def test_demo_and_bench_overwrite_keep_the_old_run_and_the_inputs(tmp_path, capsys, monkeypatch):
    from smrabooth_sprites import runs
    from smrabooth_sprites.experiment import resolve_bundle

    out = tmp_path / "demo"
    out.mkdir()
    (out / "run.json").write_text('{"command": "demo"}\n')
    (out / "report.html").write_text("old")
    shutil.copytree(resolve_bundle(None), out / "bundle")
    rc, err = cli(capsys, "demo", "--model", out / "bundle", "--out", out, "--overwrite")
    assert rc == 2 and "holds the input --model" in err and (out / "bundle" / "model_index.json").is_file()
    shutil.rmtree(out / "bundle")
    before = snapshot(out)

    def failing(settings, case, seed, folder, **k):
        (folder / "report.html").write_text("half")
        raise RuntimeError("killed")

    monkeypatch.setattr(runs, "make_demo", failing)
    rc, err = cli(capsys, "demo", "--out", out, "--overwrite")
    assert rc == 1 and "killed" in err
    assert snapshot(out) == before and leftovers(out) == []

    def working(settings, case, seed, folder, **k):
        (folder / "run.json").write_text('{"command": "demo"}\n')
        (folder / "report.html").write_text("new")
        return {"result": {}, "baseline": {}}

    monkeypatch.setattr(runs, "make_demo", working)
    monkeypatch.setattr("smrabooth_sprites.report.demo_summary", lambda *a: "")
    assert cli(capsys, "demo", "--out", out, "--overwrite")[0] == 0
    assert (out / "report.html").read_text() == "new" and leftovers(out) == []
    assert set(json.loads((out / MARKER).read_text())["files"]) == {"run.json", "report.html"}
    # now the marker lists what the demo wrote: anything else is the user's
    (out / "notes.txt").write_text("mine")
    rc, err = cli(capsys, "bench", "sprites", "--out", out, "--overwrite", "--variants", "base")
    assert rc == 2 and "holds notes.txt" in err and (out / "notes.txt").read_text() == "mine"


def test_bundle_overwrite_replaces_bundles_only(tmp_path):
    from smrabooth.errors import SmraboothError
    from smrabooth_sprites.bundle import save_bundle
    from smrabooth_sprites.pretrain.assemble import assemble_bundle

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "x.txt").write_text("x")
    with pytest.raises(SmraboothError, match="not an SMRA-Sprites bundle"):
        save_bundle(None, mine, overwrite=True)
    (tmp_path / "pre" / "dit").mkdir(parents=True)
    with pytest.raises(SmraboothError, match="holds the input stage folder"):
        assemble_bundle(tmp_path / "pre", bundle_out=tmp_path / "pre", overwrite=True)
    assert (mine / "x.txt").is_file() and (tmp_path / "pre" / "dit").is_dir()
    (mine / "sprites.json").write_text("{}")  # a bundle, with the user's notes put in it
    with pytest.raises(SmraboothError, match="holds x.txt, which is not part of a bundle"):
        save_bundle(None, mine, overwrite=True)
    assert (mine / "x.txt").is_file()


def test_a_file_dropped_into_the_old_run_while_the_new_one_is_made_is_kept(tmp_path, capsys):
    from smrabooth import run_folder

    out = tmp_path / "set"
    out.mkdir()
    (out / "a.png").write_text("old")
    run_folder.write_marker(out, "prepare-subject", ["a.png"])
    staging = run_folder.begin(out, "prepare-subject")
    (staging / "a.png").write_text("new")
    (out / "notes.txt").write_text("written while the new set was made")
    assert run_folder.commit(staging) == out and (out / "a.png").read_text() == "new"
    kept = tmp_path / ".set.replaced"
    assert (kept / "notes.txt").read_text() == "written while the new set was made"
    assert "it is kept, with the old run" in capsys.readouterr().err
    staging = run_folder.begin(out, "prepare-subject")  # a clean old run is removed
    run_folder.commit(staging)
    assert leftovers(out) == [".set.replaced-2"]  # the kept one is never deleted by a later replacement
    assert (tmp_path / ".set.replaced-2" / "notes.txt").is_file()


# ---------------------------------------------------------------- files a command found, or that were added later
def test_a_set_written_beside_other_files_never_claims_them(tmp_path, capsys):
    """prepare-motion / prepare-subject into a folder of the user's files write beside them; a later --overwrite of
    that set must not take those files (the source clip, the photo, notes) for its own."""
    from smrabooth.video import write_video

    clips = tmp_path / "clips"
    mine = write_video(np.full((6, 32, 32, 3), 90, np.uint8), clips / "mine.mp4", fps=8)
    (clips / "thesis.tex").write_text("years of work")
    other = write_video(np.full((6, 32, 32, 3), 40, np.uint8), tmp_path / "other" / "new.mp4", fps=8)
    pm = ["prepare-motion", "--name", "m", "--caption", "a ball S* moving", "--out", clips, "--fps", "8"]
    assert cli(capsys, pm[0], mine, *pm[1:])[0] == 0
    before = snapshot(clips)
    rc, err = cli(capsys, pm[0], other, *pm[1:], "--overwrite")
    assert rc == 2 and "holds mine.mp4, which smrabooth prepare-motion did not write" in err, err
    assert snapshot(clips) == before and leftovers(clips) == []

    photos = tmp_path / "photos"
    dog = photo(photos / "dog.png")
    (photos / "notes.txt").write_text("mine")
    ps = [*PS[:1], dog, *PS[1:], "--out", photos]
    assert cli(capsys, *ps)[0] == 0
    before = snapshot(photos)
    rc, err = cli(capsys, *PS[:1], photo(tmp_path / "new" / "b.png"), *PS[1:], "--out", photos, "--overwrite")
    assert rc == 2 and "holds dog.png, which smrabooth prepare-subject did not write" in err, err
    assert snapshot(photos) == before


def test_a_file_added_inside_a_run_is_never_deleted(trained, tiny_model_dir, tmp_path, capsys):
    """A photo added to a prepared set's images/, notes in a run's checkpoints/: files the command did not write,
    in a finished run or in one that stopped before it finished."""
    out = tmp_path / "set"
    photo(tmp_path / "in" / "a.png")
    assert cli(capsys, *PS, tmp_path / "in", "--out", out)[0] == 0
    photo(out / "images" / "my_extra_photo.png")
    before = snapshot(out)
    rc, err = cli(capsys, *PS, tmp_path / "in", "--out", out, "--overwrite")
    assert rc == 2 and "holds images/my_extra_photo.png, which smrabooth prepare-subject did not write" in err, err
    assert snapshot(out) == before

    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    (run / "checkpoints" / "README.txt").write_text("keep")
    argv = train_argv(tiny_model_dir, trained / "data", run, "--overwrite")
    rc, err = cli(capsys, *argv)
    assert rc == 2 and "holds checkpoints/README.txt, which smrabooth train-subject did not write" in err, err
    (run / "subject_lora.safetensors").unlink()  # as a run stopped before it finished leaves it
    marker = json.loads((run / MARKER).read_text())
    (run / MARKER).write_text(json.dumps({k: v for k, v in marker.items() if k != "files"}))
    (run / "checkpoints" / "step-1" / "notes.txt").write_text("keep")
    (run / "checkpoints" / "README.txt").unlink()
    rc, err = cli(capsys, *argv)
    assert rc == 2 and "holds checkpoints/step-1/notes.txt, which smrabooth train-subject" in err, err
    assert (run / "checkpoints" / "step-1" / "notes.txt").read_text() == "keep"


def test_a_resumed_run_never_claims_files_added_before_it_resumed(trained, tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    (run / "notes.txt").write_text("mine")
    assert cli(capsys, *train_argv(tiny_model_dir, trained / "data", run, "--resume", "--steps", "2"))[0] == 0
    marker = json.loads((run / MARKER).read_text())
    assert "notes.txt" not in marker["files"] and marker["found"] == ["notes.txt"]
    assert "checkpoints/step-2/lora.safetensors" in marker["files"]
    rc, err = cli(capsys, *train_argv(tiny_model_dir, trained / "data", run, "--overwrite"))
    assert rc == 2 and "holds notes.txt, which smrabooth train-subject did not write" in err
    assert (run / "notes.txt").read_text() == "mine"


def test_demo_and_bench_never_take_a_folder_of_other_files_for_a_run(tmp_path, capsys, monkeypatch):
    from smrabooth_sprites import runs

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    monkeypatch.setattr(runs, "run_bench", lambda *a, **k: pytest.fail("a bench run in a folder of other files"))
    rc, err = cli(capsys, "bench", "sprites", "--out", mine, "--resume", "--variants", "base")
    assert rc == 2 and "not a smrabooth demo or bench run" in err and snapshot(mine) == {"thesis.tex": b"years of work"}
    # a demo run of a smrabooth older than the marker, with the user's notes in it
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text('{"command": "demo"}\n')
    (old / "notes.txt").write_text("mine")
    monkeypatch.setattr(runs, "make_demo", lambda *a, **k: pytest.fail("the old run's notes would be deleted"))
    rc, err = cli(capsys, "demo", "--out", old, "--overwrite")
    assert rc == 2 and "holds notes.txt, which smrabooth demo did not write" in err
    assert (old / "notes.txt").read_text() == "mine" and leftovers(old) == []


def test_per_expert_runs_are_replaced_only_whole_and_only_their_own(tmp_path, capsys):
    """Wan2.2 A14B: a run of both experts' LoRAs is replaced like any run (its two files together), never with a
    file it did not write."""
    from test_train_subject import make_subject_folder

    from smrabooth.backbones import BACKBONES

    model = tmp_path / "model"
    BACKBONES["wan2.2-a14b"].build_tiny().save_pretrained(model)
    data = make_subject_folder(tmp_path / "data")
    run = tmp_path / "run"
    argv = train_argv(model, data, run, "--expert", "both")
    assert cli(capsys, *argv)[0] == 0
    assert sorted(p.name for p in run.glob("*.safetensors")) == ["subject_lora_high.safetensors",
                                                                 "subject_lora_low.safetensors"]
    (run / "checkpoints" / "notes.txt").write_text("mine")
    before = snapshot(run)
    rc, err = cli(capsys, *train_argv(model, data, run, "--expert", "high", "--overwrite"))
    assert rc == 2 and "holds checkpoints/notes.txt, which smrabooth train-subject did not write" in err
    assert snapshot(run) == before
    (run / "checkpoints" / "notes.txt").unlink()
    assert cli(capsys, *train_argv(model, data, run, "--expert", "high", "--overwrite"))[0] == 0
    assert sorted(p.name for p in run.glob("*.safetensors")) == ["subject_lora_high.safetensors"]
    assert leftovers(run) == []


def test_commands_write_into_folders_that_do_not_exist_yet(tiny_model_dir, tmp_path, capsys):
    """--out under folders not made yet is created (issue 34 found it refused)."""
    from test_train_subject import make_subject_folder

    from smrabooth.lora.files import save_lora
    from smrabooth.video import write_video

    data = make_subject_folder(tmp_path / "data")
    clip = write_video(np.full((6, 32, 32, 3), 90, np.uint8), tmp_path / "clip.mp4", fps=8)
    from conftest import make_random_lora
    from diffusers import WanTransformer3DModel

    lora = save_lora(tmp_path / "l.safetensors", make_random_lora(
        WanTransformer3DModel.from_pretrained(tiny_model_dir / "transformer"), rank=2))
    new = tmp_path / "not" / "yet"
    for argv, made in [
        ([*PS, data / "images", "--out", new / "ps"], new / "ps" / "metadata.csv"),
        (["prepare-motion", clip, "--name", "m", "--caption", "S*", "--out", new / "pm", "--fps", "8"],
         new / "pm" / "m_00.mp4"),
        (["prompts", "--subjects", data, "--motions", new / "pm", "--out", new / "p" / "p.json"], new / "p" / "p.json"),
        (["lora", "convert", lora, new / "c" / "c.safetensors", "--to", "comfyui"], new / "c" / "c.safetensors"),
        (["generate", "--model", tiny_model_dir, "--prompt", "a dog", "--frames", "5", "--height", "32", "--width",
          "32", "--steps", "1", "--out", new / "g" / "v.mp4", "--save-frames", new / "f"], new / "f" / "frame_0004.png"),
    ]:
        rc, err = cli(capsys, *argv)
        assert rc == 0 and made.is_file(), (argv[0], err)


def test_train_motion_overwrite_with_a_broken_clip_keeps_the_old_run(tiny_model_dir, tmp_path, capsys):
    from test_train_motion import make_motion_folder

    data = make_motion_folder(tmp_path / "clips")
    run = tmp_path / "run"
    tm = ["train-motion", "--model", tiny_model_dir, "--out", run, "--no-mora", "--frames", "5", "--height", "32",
          "--width", "32", "--steps", "1", "--rank", "4", "--quiet", "--cache-dir", tmp_path / "cache"]
    assert cli(capsys, *tm, "--data", data)[0] == 0
    before = snapshot(run)
    broken = make_motion_folder(tmp_path / "broken")
    (broken / "clip_0.mp4").write_bytes((data / "clip_0.mp4").read_bytes()[:300])
    rc, err = cli(capsys, *tm, "--data", broken, "--overwrite")
    assert rc == 2 and "clip_0.mp4 is not a readable video" in err
    assert snapshot(run) == before and leftovers(run) == []
