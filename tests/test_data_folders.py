import numpy as np
import pytest
from PIL import Image

from smrabooth.data.folders import (
    MotionItem,
    SubjectItem,
    find_motion_folders,
    find_subject_folders,
    read_metadata,
    read_motion_folder,
    read_subject_folder,
    write_metadata,
)
from smrabooth.errors import SmraboothError


def make_subject(root, names=("0001.png", "0002.png"), size=(24, 16), text="a picture of V* dog"):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for n in names:
        Image.fromarray(np.full((size[1], size[0], 3), 100, np.uint8)).save(root / "images" / n)
        m = np.zeros((size[1], size[0]), np.uint8)
        m[4:12, 6:18] = 255
        Image.fromarray(m).save(root / "masks" / n)
    write_metadata(root / "metadata.csv", [(n, text) for n in names])
    return root


def test_read_subject_folder_round_trip(tmp_path):
    d = make_subject(tmp_path / "dog")
    items = read_subject_folder(d)
    assert items == [SubjectItem(d / "images" / "0001.png", d / "masks" / "0001.png", "a picture of V* dog"),
                     SubjectItem(d / "images" / "0002.png", d / "masks" / "0002.png", "a picture of V* dog")]


def test_metadata_with_bom_and_spaces(tmp_path):
    p = tmp_path / "metadata.csv"
    p.write_bytes("\ufefffile_name , text\n0001.png , a picture of V* cat \n".encode("utf-8"))
    assert read_metadata(p) == [("0001.png", "a picture of V* cat")]
    p.write_text("name,caption\nx.png,y\n")
    with pytest.raises(SmraboothError, match="file_name,text"):
        read_metadata(p)
    p.write_text("file_name,text\n")
    with pytest.raises(SmraboothError, match="lists no files"):
        read_metadata(p)


def test_jpg_image_with_png_mask(tmp_path):
    d = tmp_path / "s"
    (d / "images").mkdir(parents=True)
    (d / "masks").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "images" / "photo.jpg")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(d / "masks" / "photo.png")
    write_metadata(d / "metadata.csv", [("photo.jpg", "a picture of V* cup")])
    assert read_subject_folder(d)[0].mask_path == d / "masks" / "photo.png"


@pytest.mark.parametrize("breakage, match", [
    ("missing_image", "0002.png but .* does not exist"),
    ("missing_mask", "no mask for"),
    ("black_mask", "all black"),
    ("size_mismatch", "masks must have the size"),
    ("unreadable_image", "not a readable image"),
    ("no_metadata", "metadata.csv"),
    ("empty_text", "empty text"),
    ("duplicate", "twice"),
])
def test_subject_folder_bad_input(tmp_path, breakage, match):
    d = make_subject(tmp_path / "dog")
    if breakage == "missing_image":
        (d / "images" / "0002.png").unlink()
    elif breakage == "missing_mask":
        (d / "masks" / "0002.png").unlink()
    elif breakage == "black_mask":
        Image.fromarray(np.zeros((16, 24), np.uint8)).save(d / "masks" / "0002.png")
    elif breakage == "size_mismatch":
        Image.fromarray(np.full((8, 8), 255, np.uint8)).save(d / "masks" / "0002.png")
    elif breakage == "unreadable_image":
        (d / "images" / "0002.png").write_bytes(b"not a png")
    elif breakage == "no_metadata":
        (d / "metadata.csv").unlink()
    elif breakage == "empty_text":
        write_metadata(d / "metadata.csv", [("0001.png", "")])
    elif breakage == "duplicate":
        write_metadata(d / "metadata.csv", [("0001.png", "a"), ("0001.png", "a")])
    with pytest.raises(SmraboothError, match=match):
        read_subject_folder(d)


def test_subject_folder_without_masks(tmp_path):
    d = make_subject(tmp_path / "dog")
    import shutil

    shutil.rmtree(d / "masks")
    with pytest.raises(SmraboothError, match="no masks/ folder"):
        read_subject_folder(d)
    assert [i.mask_path for i in read_subject_folder(d, require_masks=False)] == [None, None]


def test_motion_folder(tmp_path):
    d = tmp_path / "dribble"
    d.mkdir()
    (d / "a.mp4").write_bytes(b"x")
    write_metadata(d / "metadata.csv", [("a.mp4", "a person S* dribbling")])
    assert read_motion_folder(d) == [MotionItem(d / "a.mp4", "a person S* dribbling")]
    with pytest.raises(SmraboothError, match="not a readable video"):
        read_motion_folder(d, check_files=True)
    write_metadata(d / "metadata.csv", [("b.mp4", "a person S* dribbling")])
    with pytest.raises(SmraboothError, match="b.mp4 but"):
        read_motion_folder(d)


def test_find_folders_in_authors_layout(tmp_path):
    root = tmp_path / "dataset"
    make_subject(root / "subject_customized" / "dog")
    make_subject(root / "subject_customized" / "cat")
    (root / "subject_customized" / "notes").mkdir()  # not a subject folder: ignored
    for motion in ("dribble", "piano"):
        d = root / "motion_customized" / "video" / motion
        d.mkdir(parents=True)
        (d / "0.mp4").write_bytes(b"x")
        write_metadata(d / "metadata.csv", [("0.mp4", "a person S* moving")])
        (d / "prompts.json").write_text("[]")
    subjects = find_subject_folders(root)
    assert subjects == {"cat": root / "subject_customized" / "cat", "dog": root / "subject_customized" / "dog"}
    assert find_subject_folders(root / "subject_customized" / "dog") == {"dog": root / "subject_customized" / "dog"}
    motions = find_motion_folders(root)
    assert list(motions) == ["dribble", "piano"]
    assert find_motion_folders(motions["piano"]) == {"piano": motions["piano"]}
    assert [len(read_motion_folder(p)) for p in motions.values()] == [1, 1]
    with pytest.raises(SmraboothError, match="no subject folders"):
        find_subject_folders(tmp_path / "dataset" / "motion_customized")
    with pytest.raises(SmraboothError, match="no motion folders"):
        find_motion_folders(tmp_path / "dataset" / "subject_customized")
