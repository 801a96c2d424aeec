import json

import numpy as np
import pytest
from PIL import Image

from smrabooth.cli import main
from smrabooth.data.folders import write_metadata
from smrabooth.data.prompts import (
    DEFAULT_BACKGROUNDS,
    build_test_prompts,
    load_exclusions,
    motion_phrase,
    subject_phrase,
)
from smrabooth.errors import SmraboothError


def test_phrases():
    assert subject_phrase("a picture of V* dog", "dog") == "a V* dog"
    assert subject_phrase("A photo of a V* red car.", "car") == "a V* red car"
    assert subject_phrase("V* cat", "cat") == "a V* cat"
    assert motion_phrase("a person S* dribbling a basketball.") == "S* dribbling a basketball"
    with pytest.raises(SmraboothError, match="no S\\* token"):
        motion_phrase("a person dribbling")


def test_grid_exclusions_and_background_rotation():
    subjects = {"dog": "a V* dog", "car": "a V* car"}
    motions = {"dribble": "S* dribbling a basketball", "piano": "S* playing the piano"}
    bgs = ["on a beach", "in a forest", "on the moon"]
    prompts = build_test_prompts(subjects, motions, bgs, per_pair=2, exclude={("car", "piano")})
    pairs = [(p["subject"], p["motion"]) for p in prompts]
    assert pairs == [("dog", "dribble")] * 2 + [("dog", "piano")] * 2 + [("car", "dribble")] * 2
    assert [p["background"] for p in prompts] == ["on a beach", "in a forest", "on the moon", "on a beach",
                                                  "in a forest", "on the moon"]
    assert prompts[0]["prompt"] == "a V* dog S* dribbling a basketball, on a beach"
    wild = build_test_prompts(subjects, motions, bgs, per_pair=1, exclude={("car", "*")})
    assert {p["subject"] for p in wild} == {"dog"}
    with pytest.raises(SmraboothError, match="every subject-motion pair is excluded"):
        build_test_prompts(subjects, motions, bgs, exclude={("*", "*")})


def test_exclusion_file(tmp_path):
    f = tmp_path / "ex.txt"
    f.write_text("# illogical\ncar, piano\n\ncar,dribble  # no hands\n")
    assert load_exclusions(f) == {("car", "piano"), ("car", "dribble")}
    f.write_text("car piano\n")
    with pytest.raises(SmraboothError, match="line 1"):
        load_exclusions(f)


def test_cli_on_authors_layout(tmp_path, capsys):
    root = tmp_path / "data"
    for name in ("dog", "car"):
        d = root / "subject_customized" / name
        (d / "images").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "images" / "0001.png")
        write_metadata(d / "metadata.csv", [("0001.png", f"a picture of V* {name}")])
    d = root / "motion_customized" / "video" / "dribble"
    d.mkdir(parents=True)
    write_metadata(d / "metadata.csv", [("0.mp4", "a person S* dribbling a basketball")])
    ex = tmp_path / "ex.txt"
    ex.write_text("car,dribble\n")
    out = tmp_path / "combine_test_prompts.json"
    assert main(["prompts", "--subjects", str(root), "--motions", str(root), "--out", str(out),
                 "--exclude", str(ex)]) == 0
    prompts = json.loads(out.read_text())
    assert [p["prompt"] for p in prompts] == [f"a V* dog S* dribbling a basketball, {b}"
                                              for b in DEFAULT_BACKGROUNDS[:3]]
    assert "wrote 3 prompts" in capsys.readouterr().out


def test_phrases_keep_the_authors_tokens():
    assert subject_phrase("A picture of sks dog", "dog") == "a sks dog"
    assert subject_phrase("A picture of sks bear plushie", "bear_plushie") == "a sks bear plushie"
    assert motion_phrase("a dog is vvt walking") == "is vvt walking"
    assert motion_phrase("A person is vvt skateboarding past a river.") == "is vvt skateboarding past a river"
    assert motion_phrase("two dogs are vvt running") == "are vvt running"
    assert motion_phrase("a person S* dribbling a basketball") == "S* dribbling a basketball"
    assert motion_phrase("this is S* dribbling", "S*") == "is S* dribbling"
    with pytest.raises(SmraboothError, match="no S\\* token"):
        motion_phrase("a dog is walking")


def test_cli_grid_from_authors_folders(tmp_path, capsys):
    """Their folders as shipped: `video,mask,prompt` / `video,prompt` metadata, sks / vvt captions, and a
    combine_test_prompts.json whose prompt replaces the generated ones for the subject it names."""
    from test_data_folders import make_authors_motion, make_authors_subject

    root = tmp_path / "datasets"
    make_authors_subject(root, "dog")
    make_authors_subject(root, "wolf_plushie", paths="parent")
    walk = make_authors_motion(root, "dog_walking")
    make_authors_motion(root, "person_twirling", "a person is vvt twirling")
    theirs = "A sks dog is vvt walking through an open-air market, dodging fruit stands."
    (walk / "combine_test_prompts.json").write_text(json.dumps({"prompts": {"dog": theirs, "cat2": "unused"}}))
    out = tmp_path / "grid.json"
    assert main(["prompts", "--subjects", str(root), "--motions", str(root), "--out", str(out),
                 "--per-pair", "2"]) == 0
    prompts = json.loads(out.read_text())
    assert [(p["subject"], p["motion"], p["prompt"]) for p in prompts] == [
        ("dog", "dog_walking", theirs),
        ("dog", "person_twirling", f"a sks dog is vvt twirling, {DEFAULT_BACKGROUNDS[0]}"),
        ("dog", "person_twirling", f"a sks dog is vvt twirling, {DEFAULT_BACKGROUNDS[1]}"),
        ("wolf_plushie", "dog_walking", f"a sks wolf plushie is vvt walking, {DEFAULT_BACKGROUNDS[2]}"),
        ("wolf_plushie", "dog_walking", f"a sks wolf plushie is vvt walking, {DEFAULT_BACKGROUNDS[3]}"),
        ("wolf_plushie", "person_twirling", f"a sks wolf plushie is vvt twirling, {DEFAULT_BACKGROUNDS[4]}"),
        ("wolf_plushie", "person_twirling", f"a sks wolf plushie is vvt twirling, {DEFAULT_BACKGROUNDS[5]}")]
    assert [p["source"] for p in prompts] == ["combine_test_prompts.json"] + ["generated"] * 6
    assert "wrote 7 prompts (2 subjects x 2 motions, 1 of them from combine_test_prompts.json)" in capsys.readouterr().out
    assert main(["prompts", "--subjects", str(root), "--motions", str(root), "--out", str(out),
                 "--ignore-shipped-prompts"]) == 0
    assert len(json.loads(out.read_text())) == 12  # 2 x 2 pairs x 3 scenes, all generated
    (walk / "combine_test_prompts.json").write_text('{"prompts": ["a list"]}')
    capsys.readouterr()
    assert main(["prompts", "--subjects", str(root), "--motions", str(root), "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'combine_test_prompts.json must hold {"prompts": {"<subject>"' in err
