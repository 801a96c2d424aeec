import json

import numpy as np
import pytest
from PIL import Image

from smrabooth.data.folders import (
    OURS,
    Metadata,
    MotionItem,
    Row,
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
    assert read_metadata(p) == Metadata(OURS, [Row("0001.png", "a picture of V* cat")])
    p.write_text("name,caption\nx.png,y\n")
    with pytest.raises(SmraboothError, match="file_name,text") as e:
        read_metadata(p)
    # one line naming the columns found and both accepted layouts
    assert str(e.value) == (f"{p} has the columns name,caption: a subject folder's metadata.csv needs file_name,text "
                            "(smrabooth's layout) or video,mask,prompt (the authors' released layout)")
    with pytest.raises(SmraboothError) as e:
        read_metadata(p, "motion")
    assert "\n" not in str(e.value) and "file_name,text (smrabooth's layout) or video,prompt (the authors'" in str(e.value)
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


# ---------------------------------------------------------------- the authors' released layout
# Hand-written folders with the column names, path forms, quoting and CRLF line ends of the authors'
# files: their dataset release (subject paths relative to the subject folder) and the example in their
# code release (subject paths relative to subject_customized; motion paths always relative to
# motion_customized/video).
def make_authors_subject(root, name="dog", paths="subject", size=(24, 16), caption=None):
    d = make_subject(root / "subject_customized" / name, names=("00.png", "01.png"), size=size)
    prefix = "" if paths == "subject" else f"{name}/"
    caption = caption or f"A picture of sks {name.replace('_', ' ')}"
    rows = ["video,mask,prompt"] + [f"{prefix}images/{n},{prefix}masks/{n},{caption}" for n in ("00.png", "01.png")]
    (d / "metadata.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    # the extra files their release ships beside it
    (d / "prompts.txt").write_text(f"{name} *\n{name} *\n")
    (d / "videos.txt").write_text("videos/00.mp4\nvideos/01.mp4\n")
    (d / "videos").mkdir()
    (d / "videos" / "00.mp4").write_bytes(b"not read")
    (d / "prompt.json").write_text(json.dumps({"prompts": [f"A sks {name} is running through a forest."]}))
    return d


def make_authors_motion(root, name="dog_walking", caption="a dog is vvt walking", video_bytes=b"x"):
    d = root / "motion_customized" / "video" / name
    d.mkdir(parents=True)
    (d / "00.mp4").write_bytes(video_bytes)
    (d / "metadata.csv").write_bytes(f'video,prompt\r\n{name}/00.mp4,"{caption}"\r\n'.encode())
    (d / "prompts.json").write_text(json.dumps({"prompts": [caption]}))
    (d / "eval_prompts.json").write_text(json.dumps({"prompts": [caption.replace("a dog", "an astronaut")]}))
    return d


@pytest.mark.parametrize("paths", ["subject", "parent"])
def test_authors_subject_folder_read_as_is(tmp_path, paths):
    d = make_authors_subject(tmp_path / "datasets", paths=paths)
    assert read_metadata(d / "metadata.csv").columns == ("video", "mask", "prompt")
    items = read_subject_folder(d)
    assert items == [SubjectItem(d / "images" / n, d / "masks" / n, "A picture of sks dog") for n in ("00.png", "01.png")]
    assert {i.token for i in items} == {"sks"}
    # an image missing: one line naming both places it was looked for
    (d / "images" / "01.png").unlink()
    with pytest.raises(SmraboothError, match="names .*01.png but neither .* nor .* exists") as e:
        read_subject_folder(d)
    assert "\n" not in str(e.value)


def test_authors_subject_mask_column(tmp_path):
    d = make_authors_subject(tmp_path / "datasets")
    # the mask column, not masks/<file_name>, says which mask goes with which image
    (d / "metadata.csv").write_text("video,mask,prompt\nimages/00.png,masks/01.png,A picture of sks dog\n")
    assert read_subject_folder(d)[0].mask_path == d / "masks" / "01.png"
    (d / "metadata.csv").write_text("video,mask,prompt\nimages/00.png,,A picture of sks dog\n")
    with pytest.raises(SmraboothError, match="mask column is empty"):
        read_subject_folder(d)
    assert read_subject_folder(d, require_masks=False)[0].mask_path is None


def test_authors_motion_folder_read_as_is(tmp_path):
    d = make_authors_motion(tmp_path / "datasets")
    assert read_motion_folder(d) == [MotionItem(d / "00.mp4", "a dog is vvt walking")]
    assert read_motion_folder(d)[0].token == "vvt"
    # a path relative to the folder itself also resolves
    (d / "metadata.csv").write_text('video,prompt\n00.mp4,"a dog is vvt walking"\n')
    assert read_motion_folder(d)[0].video_path == d / "00.mp4"
    (d / "metadata.csv").write_text('video,prompt\ndog_walking/01.mp4,"a dog is vvt walking"\n')
    with pytest.raises(SmraboothError, match="dog_walking/01.mp4 but neither"):
        read_motion_folder(d)


def test_authors_dataset_found_from_its_root(tmp_path):
    root = tmp_path / "datasets"
    make_authors_subject(root, "dog")
    make_authors_subject(root, "wolf_plushie", paths="parent")
    make_authors_motion(root, "dog_walking")
    make_authors_motion(root, "person_twirling", "a person is vvt twirling")
    subjects, motions = find_subject_folders(root), find_motion_folders(root)
    assert list(subjects) == ["dog", "wolf_plushie"] and list(motions) == ["dog_walking", "person_twirling"]
    assert [i.text for i in read_subject_folder(subjects["wolf_plushie"])] == ["A picture of sks wolf plushie"] * 2
    assert [read_motion_folder(m)[0].text for m in motions.values()] == ["a dog is vvt walking",
                                                                        "a person is vvt twirling"]


def test_our_layout_is_not_mistaken_for_theirs(tmp_path):
    """A subject folder of ours whose file names look like their paths is still read relative to images/."""
    d = make_subject(tmp_path / "dog", names=("00.png",))
    assert read_subject_folder(d)[0].image_path == d / "images" / "00.png"
    p = d / "metadata.csv"
    p.write_text("video,prompt\n00.png,a picture of V* dog\n")  # the motion columns in a subject folder
    with pytest.raises(SmraboothError, match="video,mask,prompt \\(the authors' released layout\\)"):
        read_subject_folder(d)


def test_tokens():
    from smrabooth.data.tokens import MOTION_TOKENS, SUBJECT_TOKENS, find_token, folder_token, missing_token_warnings

    assert find_token("A picture of sks dog", SUBJECT_TOKENS) == "sks"
    assert find_token("a picture of V* dog", SUBJECT_TOKENS) == "V*"
    assert find_token("two tasks, asks", SUBJECT_TOKENS) is None  # a word, not a substring
    assert find_token("a dog is vvt walking", MOTION_TOKENS) == "vvt"
    assert folder_token(["a S* b", "no token", "c S* d", "e vvt f"], MOTION_TOKENS) == "S*"
    assert folder_token(["plain"], MOTION_TOKENS) is None
    lines = missing_token_warnings("a V* dog is vvt walking", {"subject": "sks", "motion": "vvt"})
    assert len(lines) == 1 and "subject LoRA was trained on captions with 'sks'" in lines[0]
    assert missing_token_warnings("A sks dog", {"subject": "sks", "motion": None}) == []


# ---------------------------------------------------------------- both trainers, from their folders
def _tensors_equal(a, b):
    from smrabooth.lora.files import load_lora

    la, lb = load_lora(a), load_lora(b)
    return la.tensors.keys() == lb.tensors.keys() and all((la.tensors[k] == lb.tensors[k]).all() for k in la.tensors)


def test_train_subject_from_authors_folder(tmp_path):
    """Their subject folder trains unchanged, exactly as the same images and caption in our layout."""
    import shutil

    from test_train_subject import config, make_subject_folder

    from smrabooth.lora.files import load_lora
    from smrabooth.models.dinov2 import build_tiny_dinov2
    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.train.subject import train_subject

    ours = make_subject_folder(tmp_path / "ours")
    (ours / "metadata.csv").write_text("file_name,text\n00.png,A picture of sks ball\n")
    theirs = tmp_path / "datasets" / "subject_customized" / "ball"
    shutil.copytree(ours / "images", theirs / "images")
    shutil.copytree(ours / "masks", theirs / "masks")
    (theirs / "metadata.csv").write_bytes(b"video,mask,prompt\r\nimages/00.png,masks/00.png,A picture of sks ball\r\n")
    (theirs / "prompts.txt").write_text("ball *\n")
    (theirs / "videos.txt").write_text("videos/00.mp4\n")
    runs = {}
    for name, data in (("ours", ours), ("theirs", theirs)):
        cfg = config(tmp_path, data=str(data), out=str(tmp_path / f"run_{name}"), steps=2)
        runs[name] = train_subject(cfg, build_tiny_wan_pipeline(), build_tiny_dinov2(), model_id="tiny",
                                   progress=False)
    assert _tensors_equal(runs["ours"], runs["theirs"])
    assert load_lora(runs["theirs"]).info["token"] == "sks"


def test_train_motion_from_authors_folder(tmp_path):
    """Their motion folder (paths relative to motion_customized/video) trains unchanged, exactly as the
    same clip and caption in our layout."""
    from test_train_motion import config, make_motion_folder, tiny_flow_model

    from smrabooth.lora.files import load_lora
    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.train.motion import train_motion

    ours = make_motion_folder(tmp_path / "ours")
    (ours / "metadata.csv").write_text('file_name,text\nclip_0.mp4,"a ball is vvt sliding right"\n')
    theirs = make_authors_motion(tmp_path / "datasets", "ball_sliding", "a ball is vvt sliding right",
                                 video_bytes=(ours / "clip_0.mp4").read_bytes())
    assert read_motion_folder(theirs)[0].video_path == theirs / "00.mp4"
    runs = {}
    for name, data in (("ours", ours), ("theirs", theirs)):
        # MoRA off: the data path is what is tested, and the MoRA decode would take minutes on a shared CPU
        cfg = config(tmp_path, data=str(data), out=str(tmp_path / f"run_{name}"), steps=2, use_mora=False)
        runs[name] = train_motion(cfg, build_tiny_wan_pipeline(), tiny_flow_model(), model_id="tiny",
                                  progress=False)
    assert _tensors_equal(runs["ours"], runs["theirs"])
    assert load_lora(runs["theirs"]).info["token"] == "vvt"
