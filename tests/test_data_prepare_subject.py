import csv

import numpy as np
import pytest
from PIL import Image

from smrabooth.cli import main
from smrabooth.data.folders import read_subject_folder
from smrabooth.data.masks import MaskSettings
from smrabooth.data.prepare_subject import prepare_subject
from smrabooth.data.segment import Detection, TextPromptedSegmenter
from smrabooth.errors import SmraboothError


class StubDetector:
    """Finds the prompt only in images whose top-left pixel is not black; its best box is fixed."""

    def __init__(self, box=(10, 8, 50, 40)):
        self.box, self.calls = box, []

    def detect(self, image, prompt):
        self.calls.append(prompt)
        if np.asarray(image)[0, 0].astype(int).sum() < 30:  # black (JPEG: nearly)
            return []
        return [Detection((0, 0, 5, 5), 0.4, "dog"), Detection(self.box, 0.9, "dog")][::-1]


class StubSam:
    """Soft mask = the box, minus a 2x2 hole, plus a stray blob (so the cleaning has work to do)."""

    def segment(self, image, box):
        x0, y0, x1, y1 = map(int, box)
        m = np.zeros((image.height, image.width), np.float32)
        m[y0:y1, x0:x1] = 0.8
        m[y0 + 3:y0 + 5, x0 + 3:x0 + 5] = 0.2
        m[0:2, -3:] = 0.9
        return m


def photos(folder, n=3, size=(64, 48), black=()):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = np.full((size[1], size[0], 3), 30 * (i + 1), np.uint8)
        if i in black:
            arr[0, 0] = 0
        p = folder / f"IMG_{i}.jpg"
        Image.fromarray(arr).save(p, quality=95)
        paths.append(p)
    return paths


def expected_mask(size=(64, 48), box=(10, 8, 50, 40)):
    m = np.zeros((size[1], size[0]), bool)
    m[box[1]:box[3], box[0]:box[2]] = True
    return m


def test_full_path_with_stub_detector(tmp_path):
    srcs = photos(tmp_path / "in")
    det = StubDetector()
    seg = TextPromptedSegmenter(det, StubSam(), MaskSettings())
    out = tmp_path / "dog"
    results = prepare_subject([tmp_path / "in"], "dog", out, segmenter=seg, log=lambda *_: None)
    assert det.calls == ["a dog"] * 3  # default object prompt
    assert [r.file_name for r in results] == ["0001.png", "0002.png", "0003.png"]
    assert [r.source for r in results] == srcs
    items = read_subject_folder(out)
    assert [i.text for i in items] == ["a picture of V* dog"] * 3
    for item in items:
        mask = np.asarray(Image.open(item.mask_path))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask > 0, expected_mask())  # best box, hole filled, blob dropped
        assert (out / "previews" / item.image_path.name).is_file()
    np.testing.assert_allclose(results[0].mask_fraction, expected_mask().mean())
    assert Image.open(out / "contact_sheet.png").size[0] > 0


def test_not_found_is_left_out_or_stops(tmp_path):
    photos(tmp_path / "in", black=(1,))
    seg = TextPromptedSegmenter(StubDetector(), StubSam())
    logs = []
    results = prepare_subject([tmp_path / "in"], "dog", tmp_path / "a", object_prompt="a corgi", segmenter=seg,
                              log=logs.append)
    assert [r.file_name for r in results] == ["0001.png", None, "0002.png"]
    assert any("IMG_1.jpg" in m and "found no 'a corgi'" in m for m in logs)
    assert len(read_subject_folder(tmp_path / "a")) == 2
    with pytest.raises(SmraboothError, match="IMG_1.jpg.*found no 'a corgi'"):
        prepare_subject([tmp_path / "in"], "dog", tmp_path / "b", object_prompt="a corgi", segmenter=seg,
                        on_not_found="error", log=lambda *_: None)
    photos(tmp_path / "dark", n=2, black=(0, 1))
    with pytest.raises(SmraboothError, match="no image kept"):
        prepare_subject([tmp_path / "dark"], "dog", tmp_path / "c", segmenter=seg, log=lambda *_: None)


def test_user_masks_exif_and_max_side(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "m").mkdir()
    # a 'phone photo' stored 80x40 with EXIF orientation 6 (rotate 90 degrees clockwise to view): upright 40x80
    raw = np.zeros((40, 80, 3), np.uint8)
    raw[:, :40] = 200
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(raw).save(tmp_path / "in" / "p.jpg", exif=exif, quality=95)
    user = np.zeros((80, 40), np.uint8)
    user[:40] = 255  # the user's mask of the upright photo
    Image.fromarray(user).save(tmp_path / "m" / "p.png")
    prepare_subject([tmp_path / "in" / "p.jpg"], "cup", tmp_path / "o", masks_dir=tmp_path / "m", max_side=40,
                    log=lambda *_: None)
    [item] = read_subject_folder(tmp_path / "o")
    img = np.asarray(Image.open(item.image_path))
    mask = np.asarray(Image.open(item.mask_path)) > 0
    assert img.shape == (40, 20, 3) and mask.shape == (40, 20)  # upright, shrunk to longest side 40
    assert img[:20].mean() > 150 and img[20:].mean() < 50  # the bright half is on top after the rotation
    np.testing.assert_array_equal(mask, np.arange(40)[:, None].repeat(20, 1) < 20)


def test_bad_inputs(tmp_path):
    srcs = photos(tmp_path / "in", n=2)
    (tmp_path / "m").mkdir()
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(tmp_path / "m" / "IMG_0.png")
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(tmp_path / "m" / "other.png")
    with pytest.raises(SmraboothError, match="no mask for IMG_1.jpg.*unmatched masks: other"):
        prepare_subject(srcs, "dog", tmp_path / "o", masks_dir=tmp_path / "m")
    assert not (tmp_path / "o").exists()  # nothing written on bad input
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"\x89PNG nope")
    with pytest.raises(SmraboothError, match="broken.png is not a readable image"):
        prepare_subject([bad], "dog", tmp_path / "o")
    with pytest.raises(SmraboothError, match="does not exist"):
        prepare_subject([tmp_path / "missing.jpg"], "dog", tmp_path / "o")
    prepare_subject(srcs, "dog", tmp_path / "o", log=lambda *_: None)  # no segmenter: images only
    assert not (tmp_path / "o" / "masks").exists()
    with pytest.raises(SmraboothError, match="already holds a prepared set.*--overwrite"):
        prepare_subject(srcs, "dog", tmp_path / "o")
    prepare_subject(srcs[:1], "cat", tmp_path / "o", overwrite=True, log=lambda *_: None)
    with open(tmp_path / "o" / "metadata.csv") as f:
        rows = list(csv.reader(f))
    assert rows == [["file_name", "text"], ["0001.png", "a picture of V* cat"]]
    assert sorted(p.name for p in (tmp_path / "o" / "images").iterdir()) == ["0001.png"]


def test_cli_with_tiny_real_models(tmp_path, capsys):
    from tiny_segment_models import tiny_grounding_dino, tiny_sam

    for name, (model, processor) in {"gd": tiny_grounding_dino(), "sam": tiny_sam()}.items():
        model.save_pretrained(tmp_path / name)
        processor.save_pretrained(tmp_path / name)
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "in" / f"{i}.png")
    base = ["prepare-subject", str(tmp_path / "in"), "--name", "dog", "--detector", str(tmp_path / "gd"),
            "--sam", str(tmp_path / "sam"), "--device", "cpu"]
    # a threshold no score can pass: the prompt is never found -> clear error, exit 2
    assert main(base + ["--out", str(tmp_path / "none"), "--box-threshold", "1.0"]) == 2
    assert "no image kept" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "none2"), "--box-threshold", "1.0", "--on-not-found",
                        "error"]) == 2
    assert "0.png" in capsys.readouterr().err
    # threshold 0: boxes are found; the random SAM's masks are whatever they are, but every kept image has
    # a non-empty binary mask of its size, and the folder reads back
    assert main(base + ["--out", str(tmp_path / "dog"), "--box-threshold", "0", "--mask-threshold", "0.5"]) == 0
    items = read_subject_folder(tmp_path / "dog")  # checks: masks exist, binary, right size, not empty
    assert len(items) == 2 and all(i.text == "a picture of V* dog" for i in items)
    assert "box score" in capsys.readouterr().out
