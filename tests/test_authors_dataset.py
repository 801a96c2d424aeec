"""scripts/check_authors_dataset.py on a tiny folder with the exact layout and columns of the authors' released
dataset: a 49-frame 16 fps clip loads with the defaults (`official` takes its frames as they are), a 45-frame one
is a one-line error, and a copy missing a listed file is read without it under --skip-absent."""

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from smrabooth.video import write_video

SCRIPT = Path(__file__).parents[1] / "scripts" / "check_authors_dataset.py"


def load_script():
    spec = importlib.util.spec_from_file_location("check_authors_dataset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_authors_dataset(root: Path, frames: int = 49) -> Path:
    """Their layout: subject_customized/<name>/{images/, masks/, metadata.csv (video,mask,prompt), prompts.txt,
    videos.txt, videos/} and motion_customized/video/<motion>/{00.mp4, metadata.csv (video,prompt), paths relative
    to motion_customized/video}."""
    subject = root / "subject_customized" / "dog"
    (subject / "images").mkdir(parents=True)
    (subject / "masks").mkdir()
    (subject / "videos").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i, size in enumerate((40, 36)):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(subject / "images" / f"0{i}.png")
        mask = np.zeros((size, size), np.uint8)
        mask[8:30, 10:28] = 255
        Image.fromarray(mask).save(subject / "masks" / f"0{i}.png")
        rows.append(f"images/0{i}.png,masks/0{i}.png,A picture of sks dog")
    (subject / "metadata.csv").write_text("video,mask,prompt\n" + "\n".join(rows) + "\n")
    (subject / "prompts.txt").write_text("dog *\n")
    (subject / "videos.txt").write_text("videos/00.mp4\n")
    motion = root / "motion_customized" / "video" / "dog_walking"
    motion.mkdir(parents=True)
    clip = np.zeros((frames, 32, 48, 3), np.uint8)
    for k in range(frames):
        clip[k, 8:24, k % 32 : k % 32 + 12] = 255
    write_video(clip, motion / "00.mp4", fps=16)
    (motion / "metadata.csv").write_text('video,prompt\ndog_walking/00.mp4,"a dog is vvt walking"\n')
    return root


def test_their_layout_loads_with_the_defaults(tmp_path, capsys):
    root = make_authors_dataset(tmp_path / "datasets")
    assert load_script().main([str(root), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "recipe official" in out and "clip timing first" in out
    assert "ok    subject dog: 2 images (36x36, 40x40), masks ok" in out
    assert ("ok    motion dog_walking: 00.mp4: 49 frames at 16 fps 48x32 -> 49 frames 576x320 "
            "(paper: 3.06 s long: 49 frames at 15 fps need 3.27 s)") in out
    assert out.strip().splitlines()[-1] == "1 subject folders, 1 motion folders: 0 failed"


def test_a_short_clip_is_one_line_and_a_partial_copy_is_read_without_its_missing_rows(tmp_path, capsys):
    root = make_authors_dataset(tmp_path / "datasets", frames=45)
    (root / "subject_customized" / "dog" / "images" / "01.png").unlink()
    script = load_script()
    assert script.main([str(root)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    fails = [line for line in lines if line.startswith("FAIL")]
    assert len(fails) == 2 and "names images/01.png but neither" in fails[0]
    assert "00.mp4 has 45 frames: --frames 49 takes the first 49 as they are (--clip-timing first)" in fails[1]
    assert script.main([str(root), "--skip-absent", "--compare", ""]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("ok    subject dog: 1 images (40x40)") and line.endswith(
        "1 listed files absent from this copy, skipped") for line in lines)
    assert lines[-1] == "1 subject folders, 1 motion folders: 1 failed (motion dog_walking); 1 absent files skipped"
