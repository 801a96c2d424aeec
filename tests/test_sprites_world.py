"""SMRA-Sprites: determinism, exact masks/positions/flow, disjoint splits, captions, motion classes, writers."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from smrabooth.cli import main
from smrabooth.errors import SmraboothError
from smrabooth_sprites import (
    COLORS,
    HELDOUT_MOTIONS,
    HELDOUT_SUBJECTS,
    MOTIONS,
    SHAPES,
    TEXTURES,
    TRAIN_MOTIONS,
    VOCABULARY,
    MotionSpec,
    SpriteDesign,
    caption_for,
    classify_motion,
    combined_prompt,
    load_ground_truth,
    motion_text,
    render_clip,
    render_image,
    sample_clip,
    sample_design,
    sample_family_clips,
    sample_motion,
    sample_still,
    still_caption,
    subject_text,
    track_sprite,
    trajectory_similarity,
    write_motion_folder,
    write_subject_folder,
)
from smrabooth_sprites.world import STILL_RADIUS, is_heldout_design, random_placement


def split_of(family):
    return "heldout" if family in HELDOUT_MOTIONS else "train"


CHECKED_SQUARE = SpriteDesign("square", "red", "checked", "white")


def family_clip(family, seed=1, design=CHECKED_SQUARE, frames=17, size=128):
    motion = sample_motion(np.random.default_rng(seed), split_of(family), family)
    return render_clip(design, motion, "blue", frames, size)


def test_vocabulary_sizes():
    assert len(SHAPES) >= 8 and len(COLORS) >= 8 and len(MOTIONS) >= 10 and len(TEXTURES) >= 4
    assert set(HELDOUT_MOTIONS) <= set(MOTIONS) and not set(HELDOUT_MOTIONS) & set(TRAIN_MOTIONS)
    rgb = np.array(list(COLORS.values()), dtype=float)
    dist = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(rgb)) * 1e9
    assert dist.min() > 80  # well separated colours


def test_determinism_and_shapes():
    a, b, c = sample_clip(3), sample_clip(3), sample_clip(4)
    for name in ("frames", "masks", "positions", "angles", "scales", "flow"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.caption == b.caption and (a.design, a.motion, a.background) == (b.design, b.motion, b.background)
    assert not np.array_equal(a.frames, c.frames)
    for frames, size in ((17, 128), (49, 64), (9, 256)):
        clip = sample_clip(7, frames=frames, size=size)
        assert clip.frames.shape == (frames, size, size, 3) and clip.frames.dtype == np.uint8
        assert clip.masks.shape == (frames, size, size) and clip.masks.dtype == bool
        assert clip.positions.shape == (frames, 2) and clip.angles.shape == clip.scales.shape == (frames,)
        assert clip.flow.shape == (frames - 1, 2, size, size) and clip.flow.dtype == np.float32


def test_masks_are_exactly_the_non_background_pixels_and_stay_in_frame():
    for seed in range(30):
        split = "heldout" if seed % 3 == 0 else "train"
        clip = sample_clip(seed, split, frames=17, size=64 if seed % 2 else 128)
        assert clip.background not in {clip.design.color, clip.design.texture_color}
        differs = (clip.frames != np.array(COLORS[clip.background], dtype=np.uint8)).any(-1)
        assert np.array_equal(differs, clip.masks)
        assert clip.masks.sum((1, 2)).min() > 10  # visible in every frame
        size = clip.frames.shape[1]
        # the radius bound keeps the whole sprite inside the frame
        lo = clip.positions - clip.scales[:, None]
        hi = clip.positions + clip.scales[:, None]
        assert lo.min() >= -0.5 and hi.max() <= size - 0.5
        # texture colour shows only where the texture is (solid designs: one colour)
        colours = {tuple(c) for c in clip.frames[clip.masks]}
        assert colours <= {COLORS[clip.design.color], COLORS[clip.design.texture_color]}


@pytest.mark.parametrize("shape", SHAPES)
def test_position_is_mask_centroid(shape):
    rng = np.random.default_rng(0)
    for _ in range(5):
        pos, radius, angle = rng.uniform(40, 88, 2), rng.uniform(12, 25), rng.uniform(0, 2 * np.pi)
        _, mask = render_image(SpriteDesign(shape, "red", "solid", "red"), "blue", 128, pos, radius, angle)
        ys, xs = np.nonzero(mask)
        assert np.hypot(xs.mean() - pos[0], ys.mean() - pos[1]) < 0.35
        assert np.hypot(xs - pos[0], ys - pos[1]).max() <= radius  # inside the radius bound


def _interior(frame, mask):
    """Sprite pixels whose 3x3 neighbourhood is sprite of the same colour (away from every edge)."""
    ok = mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ok &= np.roll(mask, (dy, dx), (0, 1)) & (np.roll(frame, (dy, dx), (0, 1)) == frame).all(-1)
    return ok


@pytest.mark.parametrize("family", MOTIONS)
def test_flow_warps_next_frame_onto_this_one(family):
    for design in (SpriteDesign("square", "red", "checked", "white"), SpriteDesign("star", "red", "striped", "white")):
        clip = family_clip(family, design=design)
        frames, (f, h, w, _) = clip.frames.astype(int), clip.frames.shape
        mismatch, interior_mismatch, still_mismatch = [], 0, []
        for k in range(f - 1):
            assert not clip.flow[k][:, ~clip.masks[k]].any()  # static background
            ys, xs = np.nonzero(clip.masks[k])
            tx = np.rint(xs + clip.flow[k, 0, ys, xs]).astype(int)
            ty = np.rint(ys + clip.flow[k, 1, ys, xs]).astype(int)
            assert ((tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)).all()
            wrong = (frames[k + 1, ty, tx] != frames[k, ys, xs]).any(1)
            mismatch.append(wrong.mean())
            still_mismatch.append((frames[k + 1, ys, xs] != frames[k, ys, xs]).any(1).mean())
            # away from edges, nearest-neighbour rounding (< 0.71 px) cannot cross a boundary: exact
            interior_mismatch += wrong[_interior(clip.frames[k], clip.masks[k])[ys, xs]].sum()
        assert interior_mismatch == 0
        assert np.mean(mismatch) < 0.15  # only edge pixels can differ
        if family not in ("grow", "shrink"):  # the slow scale change barely moves pixels
            assert np.mean(mismatch) < 0.35 * np.mean(still_mismatch)


@pytest.mark.parametrize("family", ["left", "right", "up", "down", "diagonal", "circle", "bounce", "zigzag",
                                    "figure-eight", "spiral"])
def test_translation_flow_equals_position_difference(family):
    clip = family_clip(family, frames=9, size=64)
    assert np.all(clip.angles == 0) and np.allclose(clip.scales, clip.scales[0])
    step = np.diff(clip.positions, axis=0)
    assert np.abs(step).sum(1).min() > 0.5  # visible motion every frame
    for k in range(len(step)):
        m = clip.masks[k]
        assert np.allclose(clip.flow[k, 0][m], step[k, 0], atol=1e-4)
        assert np.allclose(clip.flow[k, 1][m], step[k, 1], atol=1e-4)


def test_spin_flow_is_a_rotation_about_the_centre():
    clip = family_clip("spin", design=SpriteDesign("circle", "green", "striped", "white"))
    assert np.allclose(clip.positions, clip.positions[0]) and np.allclose(clip.scales, clip.scales[0])
    turn = np.diff(np.unwrap(clip.angles))
    assert np.abs(turn).min() > 0.15  # > 8 degrees per frame
    cx, cy = clip.positions[0]
    for k in range(len(turn)):
        ys, xs = np.nonzero(clip.masks[k])
        rx, ry = xs - cx, ys - cy
        fx, fy = clip.flow[k, 0, ys, xs], clip.flow[k, 1, ys, xs]
        # an independent reference: rotating each pixel about the centre by the recorded turn
        c, s = np.cos(turn[k]), np.sin(turn[k])
        assert np.allclose(fx, c * rx - s * ry - rx, atol=1e-3) and np.allclose(fy, s * rx + c * ry - ry, atol=1e-3)
        r = np.hypot(rx, ry)
        centre = r.argmin()
        assert np.hypot(fx[centre], fy[centre]) <= r[centre] * abs(turn[k]) + 1e-4 < 0.2
        # nearly tangential: the chord makes an angle of turn/2 with the tangent
        far = r > 3
        cos_radial = (fx * rx + fy * ry)[far] / (np.hypot(fx, fy) * r)[far]
        assert np.allclose(cos_radial, -np.sin(abs(turn[k]) / 2), atol=1e-3)


def test_grow_flow_is_radial_scaling():
    clip = family_clip("grow")
    cx, cy = clip.positions[0]
    assert np.all(np.diff(clip.scales) > 0) and clip.scales[-1] / clip.scales[0] > 2
    for k in range(len(clip.flow)):
        ys, xs = np.nonzero(clip.masks[k])
        ratio = clip.scales[k + 1] / clip.scales[k]
        assert np.allclose(clip.flow[k, 0, ys, xs], (ratio - 1) * (xs - cx), atol=1e-3)
        assert np.allclose(clip.flow[k, 1, ys, xs], (ratio - 1) * (ys - cy), atol=1e-3)


def test_splits_are_disjoint():
    for seed in range(500):
        rng = np.random.default_rng(seed)
        design = sample_design(rng, "train")
        motion = sample_motion(rng, "train")
        assert not is_heldout_design(design) and design not in HELDOUT_SUBJECTS
        assert motion.family in TRAIN_MOTIONS
    seen = set()
    for seed in range(100):
        rng = np.random.default_rng(seed)
        design, motion = sample_design(rng, "heldout"), sample_motion(rng, "heldout")
        assert design in HELDOUT_SUBJECTS and motion.family in HELDOUT_MOTIONS
        seen |= {design, motion.family}
    assert seen == set(HELDOUT_SUBJECTS) | set(HELDOUT_MOTIONS)
    # each held-out subject's words are still known individually from training
    train = [sample_design(np.random.default_rng(s), "train") for s in range(500)]
    for d in HELDOUT_SUBJECTS:
        assert any(t.shape == d.shape for t in train) and any(t.texture == d.texture for t in train)
    with pytest.raises(SmraboothError, match="not in the train split"):
        sample_motion(np.random.default_rng(0), "train", "spiral")


def test_captions_tokenise_into_vocabulary():
    vocab = set(VOCABULARY)
    assert {"V*", "S*", "sprite", "a", "doing", "on", "background"} <= vocab
    texts = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        split = "heldout" if seed % 4 == 0 else "train"
        design = sample_design(rng, split)
        motion = sample_motion(rng, split)
        bg = [c for c in COLORS if c not in design.colors][seed % 9]
        texts += [caption_for(design, motion, bg), motion_text(design, bg), subject_text(design),
                  subject_text(design, "sprite"), combined_prompt(design.shape, bg)]
    for text in texts:
        assert set(text.split()) <= vocab, text
    design = SpriteDesign("star", "red", "striped", "white")
    motion = MotionSpec("circle", 0.0, 1.0, (0.5, 0.5), 0.1, 0.2)
    assert caption_for(design, motion, "blue") == "a red striped star moving in a circle on a blue background"
    assert caption_for(SpriteDesign("ring", "orange", "solid", "orange"), MotionSpec("spin", 0, 1, (0.5, 0.5), 0.1),
                       "gray") == "an orange ring spinning on a gray background"


def test_classify_motion_recovers_every_family():
    for family in MOTIONS:
        for seed in range(6):
            clip = family_clip(family, seed=seed, frames=17 if seed % 2 else 49, size=64)
            assert classify_motion(clip.positions, clip.angles, clip.scales) == family, (family, seed)
    # tracked positions only (mask centroids), for families that move the centre
    for family in ("left", "up", "diagonal", "circle", "bounce", "zigzag", "figure-eight", "spiral"):
        clip = family_clip(family, seed=11, design=SpriteDesign("circle", "red", "solid", "red"))
        centroids = np.array([[np.nonzero(m)[1].mean(), np.nonzero(m)[0].mean()] for m in clip.masks])
        assert classify_motion(centroids) == family
    still = np.tile([[30.0, 40.0]], (17, 1))
    assert classify_motion(still) == "static"


def test_trajectory_similarity():
    t = np.linspace(0, 1, 17)
    a = np.stack([10 + 50 * t, 20 + 0 * t], 1)
    assert trajectory_similarity(a, a) == pytest.approx(1.0)
    assert trajectory_similarity(a, a + 7) == pytest.approx(1.0)  # start position does not matter
    back = np.stack([10 - 50 * t, 20 + 0 * t], 1)
    assert trajectory_similarity(a, back) == pytest.approx(0.0)
    up = np.stack([10 + 0 * t, 20 - 50 * t], 1)
    assert trajectory_similarity(a, up) == pytest.approx(1 - np.sqrt(2) / 2)
    fine = np.stack([10 + 50 * np.linspace(0, 1, 49), np.full(49, 20.0)], 1)
    assert trajectory_similarity(a, fine) == pytest.approx(1.0)  # resampled in time
    c1, c2 = family_clip("circle", seed=1), family_clip("left", seed=1)
    assert trajectory_similarity(c1.positions, c1.positions) > trajectory_similarity(c1.positions, c2.positions)


def test_track_sprite_on_exact_frames_and_after_h264(tmp_path):
    from smrabooth.video import read_video, write_video

    for family in ("circle", "grow"):
        clip = family_clip(family, seed=2, design=SpriteDesign("ring", "yellow", "dotted", "black"))
        positions, scales, masks = track_sprite(clip.frames)
        assert np.array_equal(masks, clip.masks)  # every sprite colour is > 80 from every background
        centroids = np.array([[np.nonzero(m)[1].mean(), np.nonzero(m)[0].mean()] for m in clip.masks])
        assert np.allclose(positions, centroids) and np.allclose(scales, np.sqrt(clip.masks.sum((1, 2)) / np.pi))
        write_video(clip.frames, tmp_path / "c.mp4", fps=15)
        positions, scales, masks = track_sprite(read_video(tmp_path / "c.mp4").frames)
        assert np.abs(positions - clip.positions).max() < 1.0
        assert (masks & clip.masks).sum() / (masks | clip.masks).sum() > 0.8
        assert classify_motion(positions, None, scales) == family
    empty = np.zeros((3, 16, 16, 3), dtype=np.uint8)
    positions, _, _ = track_sprite(empty)
    assert np.isnan(positions).all()
    with pytest.raises(SmraboothError, match="NaN"):
        classify_motion(positions)


def test_write_subject_folder(tmp_path):
    from smrabooth.data.folders import read_subject_folder

    design = HELDOUT_SUBJECTS[0]
    out = write_subject_folder(tmp_path / "subject", design, n_images=3, seed=0, size=64)
    items = read_subject_folder(out)
    assert len(items) == 3 and all(it.text == "a picture of V* heart" for it in items)
    for it in items:
        image, mask = np.array(Image.open(it.image_path)), np.array(Image.open(it.mask_path))
        assert image.shape == (64, 64, 3) and mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}
        bg = json.loads((out / "subject.json").read_text())["images"][items.index(it)]["background"]
        assert np.array_equal((image != np.array(COLORS[bg])).any(-1), mask == 255)
    with pytest.raises(SmraboothError, match="not empty"):
        write_subject_folder(out, design, 1, 0)
    with pytest.raises(SmraboothError, match="background red is one of the sprite's colours"):
        write_subject_folder(tmp_path / "s2", design, 1, 0, background="red")


def test_write_motion_folder(tmp_path):
    from smrabooth.video import read_video

    clips = sample_family_clips("circle", 2, seed=0, frames=9, size=64)
    spec = (HELDOUT_SUBJECTS[1], sample_motion(np.random.default_rng(0), "heldout", "spiral"), "gray")
    out = write_motion_folder(tmp_path / "motion", [*clips, spec], fps=15, frames=5, size=32)
    rows = list(csv.DictReader((out / "metadata.csv").open()))
    assert [r["file_name"] for r in rows] == ["clip_000.mp4", "clip_001.mp4", "clip_002.mp4"]
    assert all("S*" in r["text"] for r in rows)
    assert rows[2]["text"] == "a blue dotted star doing S* on a gray background"
    for row, (frames, size) in zip(rows, [(9, 64), (9, 64), (5, 32)]):
        video = read_video(out / row["file_name"])
        assert video.frames.shape == (frames, size, size, 3) and abs(video.fps - 15) < 1e-6
        truth = load_ground_truth(out / row["file_name"].replace(".mp4", ".npz"))
        assert truth["masks"].shape == (frames, size, size) and truth["flow"].shape == (frames - 1, 2, size, size)
        assert np.abs(video.frames.astype(int) - truth["frames"]).mean() < 8  # the mp4 shows the same frames
        info = json.loads((out / row["file_name"].replace(".mp4", ".json")).read_text())
        assert info["text"] == row["text"] and info["motion"]["family"] in ("circle", "spiral")
    assert np.array_equal(load_ground_truth(out / "clip_000.npz")["positions"], clips[0].positions)


def test_cli_sample(tmp_path, capsys):
    from smrabooth.video import read_video

    out = tmp_path / "s"
    assert main(["sprites", "sample", "--out", str(out), "--n", "3", "--split", "heldout", "--frames", "9",
                 "--size", "64", "--seed", "5"]) == 0
    lines = (out / "captions.txt").read_text().splitlines()
    assert len(lines) == 3 and lines[0].split("\t")[1] == sample_clip(5, "heldout", 9, 64).caption
    assert read_video(out / "sample_0005.mp4").frames.shape == (9, 64, 64, 3)
    sheet = np.array(Image.open(out / "contact_sheet.png"))
    assert sheet.shape == (128, 128, 3) and np.array_equal(sheet[:64, :64], sample_clip(5, "heldout", 9, 64).frames[0])
    assert main(["sprites", "subject", "--out", str(tmp_path / "sub"), "--design", "star,red,striped,white",
                 "--n", "2", "--size", "32"]) == 0
    assert len(list((tmp_path / "sub" / "masks").glob("*.png"))) == 2
    assert main(["sprites", "motion", "--out", str(tmp_path / "m"), "--family", "wave"]) == 2
    assert "unknown motion family 'wave'" in capsys.readouterr().err
    assert main(["sprites", "subject", "--out", str(tmp_path / "x"), "--design", "heldout:9"]) == 2


def test_bad_designs_are_clear_errors():
    with pytest.raises(SmraboothError, match="unknown sprite shape 'blob'"):
        SpriteDesign("blob", "red", "solid", "red")
    with pytest.raises(SmraboothError, match="texture_color different"):
        SpriteDesign("star", "red", "dotted", "red")
    with pytest.raises(SmraboothError, match="one of the sprite's colours"):
        render_clip(SpriteDesign("star", "red", "dotted", "white"), MotionSpec("left", 0, 0.4, (0.7, 0.5), 0.1),
                    "white")
    with pytest.raises(SmraboothError, match="unknown motion family"):
        MotionSpec("wave", 0, 1, (0.5, 0.5), 0.1)


def test_stills_for_joint_image_video_pretraining():
    """`sample_still`: deterministic; the mask is exactly the non-background pixels; captions in the subject
    captions' form, naming the background about half the time; never a held-out design; sizes up to the
    subject photos'."""
    named, vocab = 0, set(VOCABULARY)
    heldout_words = {d.words() for d in HELDOUT_SUBJECTS}
    for seed in range(60):
        image, mask, caption = sample_still(seed, "train", 64)
        again, _, caption_again = sample_still(seed, "train", 64)
        assert np.array_equal(image, again) and caption == caption_again
        background = image[~mask][0]
        assert (image[~mask] == background).all() and (image[mask] != background).any(-1).all()
        assert caption.startswith("a picture of ") and set(caption.split()) <= vocab, caption
        assert not any(w in caption for w in heldout_words), caption
        named += caption.endswith(" background")
    assert 15 < named < 45
    assert still_caption(CHECKED_SQUARE) == "a picture of a red checked square"
    assert still_caption(SpriteDesign("ring", "orange", "solid", "orange"), "blue") == \
        "a picture of an orange ring on a blue background"
    rng = np.random.default_rng(0)
    for _ in range(200):
        (x, y), r, angle = random_placement(rng, 128, STILL_RADIUS, 0.6)
        assert STILL_RADIUS[0] * 128 <= r <= STILL_RADIUS[1] * 128 and abs(angle) <= 0.6
        assert min(x, y) - r >= 1 and max(x, y) + r <= 126  # the radius bound stays inside the image


def test_sprite_scale_enlarges_the_sprites_and_keeps_them_inside_the_frame():
    """--sprite-scale (dit pretraining): scale 1 is exactly the default clip; scale 2 draws the same design,
    background and motion family with a larger sprite (cut where the path leaves no room), always inside
    the frame."""
    from smrabooth_sprites.world import sample_clip

    ratios = []
    for seed in range(40):
        base = sample_clip(seed, frames=9, size=64)
        assert np.array_equal(base.frames, sample_clip(seed, frames=9, size=64, sprite_scale=1.0).frames)
        big = sample_clip(seed, frames=9, size=64, sprite_scale=2.0)
        assert (big.design, big.background, big.motion.family) == (base.design, base.background, base.motion.family)
        assert big.scales.max() >= 0.99 * base.scales.max()
        edges = np.concatenate([big.masks[:, 0], big.masks[:, -1], big.masks[:, :, 0], big.masks[:, :, -1]], 1)
        assert not edges.any(), f"seed {seed}: the sprite touches the frame's edge"
        ratios.append(big.scales.max() / base.scales.max())
    assert np.mean(ratios) > 1.6  # most paths leave room for twice the radius


def test_partial_captions_leave_out_colour_texture_and_motion_and_nothing_else():
    """--partial-captions (dit pretraining): p = 0 is exactly the full caption; otherwise each of colour,
    texture and motion is left out independently with probability p, the clip or still itself is the same
    image, and what remains is a caption of the same grammar ('a star on a blue background') in the
    vocabulary, with its article mended."""
    from smrabooth_sprites.world import caption_omissions

    design = SpriteDesign("star", "orange", "striped", "white")
    motion = MotionSpec("circle", 0.0, 1.0, (0.5, 0.5), 0.1, 0.2)
    assert caption_for(design, motion, "blue", frozenset({"color"})) == \
        "a striped star moving in a circle on a blue background"
    assert caption_for(design, motion, "blue", frozenset({"texture", "motion"})) == "an orange star on a blue background"
    assert caption_for(design, motion, "blue", frozenset({"color", "texture", "motion"})) == \
        "a star on a blue background"
    assert still_caption(SpriteDesign("ring", "orange", "solid", "orange"), None, frozenset({"color"})) == \
        "a picture of a ring"
    assert caption_omissions(3, 0.0) == frozenset() and caption_omissions(3, 1.0) == {"color", "texture", "motion"}

    vocab, left_out, n = set(VOCABULARY), {"color": 0, "texture": 0, "motion": 0}, 200
    for seed in range(n):
        full = sample_clip(seed, frames=5, size=32)
        assert sample_clip(seed, frames=5, size=32, partial_captions=0.0).caption == full.caption
        part = sample_clip(seed, frames=5, size=32, partial_captions=0.5)
        assert np.array_equal(part.frames, full.frames) and part.design == full.design
        omit = caption_omissions(seed, 0.5)
        assert part.caption == caption_for(full.design, full.motion, full.background, omit)
        # the background colour is never one of the design's, so a colour word in front is the design's
        words = part.caption.split()
        assert set(words) <= vocab and full.design.shape in words
        assert words[0] == ("an" if words[1][0] in "aeiou" else "a"), part.caption
        assert part.caption.endswith(f"on {'an' if full.background[0] in 'aeiou' else 'a'} {full.background} background")
        assert (full.design.color in words) == ("color" not in omit), part.caption
        assert (full.design.texture in words) == ("texture" not in omit and full.design.texture != "solid")
        assert (full.motion.words() in part.caption) == ("motion" not in omit), part.caption
        for k in omit:
            left_out[k] += 1
        image, _, caption = sample_still(seed, "train", 32, partial_captions=0.5)
        full_image, _, full_caption = sample_still(seed, "train", 32)
        assert np.array_equal(image, full_image) and caption.startswith("a picture of ")
        design = sample_design(np.random.default_rng(seed), "train")  # the still's design (its first draw)
        assert (design.color in caption.split()[3:5]) == ("color" not in omit), caption
    for part_name, count in left_out.items():
        assert 0.38 * n < count < 0.62 * n, (part_name, count)


def test_family_clips_at_a_sprite_scale():
    """Scale 1 is the default clips exactly; scale 2 keeps the designs, backgrounds and path shapes and doubles
    the sprite (less where the path leaves no room), still inside the frame."""
    plain = sample_family_clips("spiral", 3, seed=101, frames=9, size=64)
    same = sample_family_clips("spiral", 3, seed=101, frames=9, size=64, sprite_scale=1.0)
    big = sample_family_clips("spiral", 3, seed=101, frames=9, size=64, sprite_scale=2.0)
    for a, b, c in zip(plain, same, big):
        assert np.array_equal(a.frames, b.frames)
        assert a.design == c.design and a.background == c.background and a.caption == c.caption
        ratio = c.motion.size / a.motion.size
        assert 1.0 < ratio <= 2.0 + 1e-9
        np.testing.assert_allclose(c.positions - c.positions[0], a.positions - a.positions[0], atol=1e-3)
        assert (c.masks.sum((1, 2)) > a.masks.sum((1, 2))).all()
    assert any(c.motion.size / a.motion.size > 1.99 for a, c in zip(plain, big))
