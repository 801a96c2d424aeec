"""The nine metrics on tiny random models, each against an independent computation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from smrabooth.errors import SmraboothError
from smrabooth.metrics.aesthetic import aesthetic_quality, load_aesthetic
from smrabooth.metrics.clip_metrics import clip_i, clip_t, load_clip, temporal_consistency
from smrabooth.metrics.common import ModelLoadError
from smrabooth.metrics.dino import dino_i, load_dino
from smrabooth.metrics.motion_fidelity import grid_queries, motion_fidelity, motion_fidelity_videos
from smrabooth.metrics.pickscore import load_pickscore, pickscore
from smrabooth.metrics.preprocess import ImageTransform, vbench_dino_transform
from smrabooth.metrics.tiny import build_tiny_metric_models
from smrabooth.metrics.tracking import FlowTracker
from smrabooth.metrics.vbench import load_subject_consistency_model, subject_consistency


def smooth_video(f=5, h=40, w=52, seed=0):
    """Low-frequency frames (so PIL's and torch's resamplers agree closely), changing over time."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(f, 3, 5, 6, generator=g)
    x = F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_metric_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def clip(tiny):
    return load_clip(str(tiny["clip"]), device="cpu", local_files_only=True, batch_size=2)


# ---------------------------------------------------------------- preprocessing against the processors
def test_clip_transform_matches_the_processor(tiny, clip):
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(str(tiny["clip"]), local_files_only=True)
    frames = smooth_video(2, 40, 52)
    ref = proc(images=[Image.fromarray(f) for f in frames], return_tensors="pt")["pixel_values"]
    ours = clip.transform(frames)
    assert ours.shape == ref.shape == (2, 3, 32, 32)
    # PIL resamples in fixed point, torch in float: rarely more than one uint8 level apart
    assert (ours - ref).abs().max() < 2.01 / 255 / 0.26
    assert (ours - ref).abs().mean() < 0.05 / 255 / 0.26


@pytest.mark.parametrize("resample,mode", [(3, "bicubic"), (2, "bilinear")])
def test_antialiased_resize_matches_pil_on_noise(resample, mode):
    frame = np.random.default_rng(0).integers(0, 256, (120, 208, 3), dtype=np.uint8)  # worst case: no smoothness
    t = ImageTransform("exact", (55, 96), mode, True, None, mean=None, std=None)
    ours = (t(frame[None])[0].permute(1, 2, 0).numpy() * 255).round()
    ref = np.asarray(Image.fromarray(frame).resize((96, 55), resample)).astype(np.float64)
    assert np.abs(ours - ref).max() <= 1 and (ours != ref).mean() < 0.01


def test_dinov2_transform_matches_the_processor(tiny):
    from transformers import AutoImageProcessor

    frames = smooth_video(2, 40, 52)
    proc = AutoImageProcessor.from_pretrained(str(tiny["dino"]), local_files_only=True)
    ref = proc(images=[Image.fromarray(f) for f in frames], return_tensors="pt")["pixel_values"]
    ours = load_dino(str(tiny["dino"]), device="cpu", local_files_only=True).transform(frames)
    assert ours.shape == ref.shape == (2, 3, 32, 32)
    assert (ours - ref).abs().max() < 3 / 255 / 0.22


def _dreamvideo_reference():
    """DINO-I's reference preprocessing: torchvision Resize(256, bicubic) + CenterCrop(224) + ToTensor +
    Normalize(ImageNet) on PIL images. torchvision's CUDA wheels do not import next to a CPU-only torch; then
    the same pipeline is written with the PIL calls torchvision makes for PIL images."""
    try:
        from torchvision import transforms as T

        return T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor(),
                          T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    except Exception:  # noqa: BLE001 - ImportError, or RuntimeError from a mismatched torchvision build
        def pil_pipeline(im):
            w, h = im.size
            size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
            im = im.resize(size, Image.BICUBIC)
            top, left = round((im.size[1] - 224) / 2.0), round((im.size[0] - 224) / 2.0)  # torchvision: int(round())
            x = torch.from_numpy(np.asarray(im.crop((left, top, left + 224, top + 224)), np.float32) / 255)
            x = x.permute(2, 0, 1)
            return (x - torch.tensor((0.485, 0.456, 0.406))[:, None, None]) / torch.tensor((0.229, 0.224, 0.225))[:, None, None]
        return pil_pipeline


def test_dino_v1_uses_dreamvideos_resize_and_crop(tiny):
    ref_t = _dreamvideo_reference()
    emb = load_dino(str(tiny["dino_v1"]), device="cpu", local_files_only=True)
    # 400 x 666: the shorter side goes to 256, the longer to int(256 * 666 / 400) = 426, crop offset
    # round(101.0) = 101; an odd leftover (427 - 224 = 203) shows floor vs round
    for h, w in ((400, 666), (300, 501)):
        frames = smooth_video(2, h, w)
        ref = torch.stack([ref_t(Image.fromarray(f)) for f in frames])
        ours = emb.transform(frames)
        assert ours.shape == ref.shape == (2, 3, 224, 224)
        diff = (ours - ref).abs()
        assert diff.max() < 2.01 / 255 / 0.224 and diff.mean() < 0.05 / 255 / 0.224


def test_int_sizes_follow_the_processor_kind():
    from smrabooth.metrics.preprocess import transform_from_processor

    clip = transform_from_processor({"feature_extractor_type": "CLIPFeatureExtractor", "size": 224, "crop_size": 224})
    vit = transform_from_processor({"feature_extractor_type": "ViTFeatureExtractor", "size": 224, "resample": 2,
                                    "do_center_crop": False})
    assert clip.output_size(480, 640) == (224, 298) and clip.crop == (224, 224)
    assert vit.output_size(480, 640) == (224, 224) and vit.crop is None and vit.interpolation == "bilinear"


def test_reference_resize_rules():
    # VBench subject consistency: shorter side to 224, aspect kept (int truncation), no crop
    assert vbench_dino_transform().output_size(480, 854) == (224, 398)
    x = vbench_dino_transform()(np.zeros((1, 480, 854, 3), np.uint8))
    assert x.shape == (1, 3, 224, 398)
    # imaging quality: only shrink, longer side <= 512
    t = ImageTransform("longer_max", 512)
    assert t.output_size(480, 854) == (287, 512) and t.output_size(256, 320) == (256, 320)
    # crop offset: transformers floors, torchvision rounds
    img = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(1, 5, 5, 3)
    floor = ImageTransform("none", 0, crop=(2, 2), crop_rounding="floor", mean=None, std=None)(img)
    rnd = ImageTransform("none", 0, crop=(2, 2), crop_rounding="round", mean=None, std=None)(img)
    assert floor[0, 0, 0, 0] * 255 == img[0, 1, 1, 0] and rnd[0, 0, 0, 0] * 255 == img[0, 2, 2, 0]


# ---------------------------------------------------------------- CLIP family
def _loop_clip_embeddings(tiny, frames, prompt):
    """The processor + model one frame at a time, as the DreamVideo-style scripts do."""
    from transformers import AutoImageProcessor, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(str(tiny["clip"]), local_files_only=True).eval()
    proc = AutoImageProcessor.from_pretrained(str(tiny["clip"]), local_files_only=True)
    tok = CLIPTokenizer.from_pretrained(str(tiny["clip"]), local_files_only=True)
    with torch.no_grad():
        t = model.get_text_features(**tok([prompt], return_tensors="pt"))
        t = t if torch.is_tensor(t) else t.pooler_output
        ims = []
        for f in frames:
            o = model.get_image_features(**proc(images=Image.fromarray(f), return_tensors="pt"))
            ims.append(o if torch.is_tensor(o) else o.pooler_output)
    return model, t[0], torch.cat(ims)


def test_clip_t_and_temporal_consistency_against_a_frame_loop(tiny, clip):
    frames = smooth_video(5)
    _, t, ims = _loop_clip_embeddings(tiny, frames, "a dog running on the beach")
    ref_t = np.mean([F.cosine_similarity(t, im, dim=0).item() for im in ims])
    assert clip_t(clip, frames, "a dog running on the beach") == pytest.approx(ref_t, abs=5e-3)
    adj = np.mean([F.cosine_similarity(ims[i], ims[i + 1], dim=0).item() for i in range(4)])
    allp = np.mean([F.cosine_similarity(ims[i], ims[j], dim=0).item() for i in range(5) for j in range(i + 1, 5)])
    assert temporal_consistency(clip, frames, "adjacent") == pytest.approx(adj, abs=5e-3)
    assert temporal_consistency(clip, frames, "all") == pytest.approx(allp, abs=5e-3)
    assert abs(adj - allp) > 1e-4  # the two options really differ on this video


def test_clip_t_equals_torchmetrics_clip_score_over_100(tiny, clip):
    tm = pytest.importorskip("torchmetrics.multimodal.clip_score")
    frames = smooth_video(4, seed=3)
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(str(tiny["clip"]), local_files_only=True).eval()
    proc = CLIPProcessor.from_pretrained(str(tiny["clip"]), local_files_only=True)

    class TensorFeatures(torch.nn.Module):  # torchmetrics expects transformers < 5 (tensors from get_*_features)
        def __init__(self, m):
            super().__init__()
            self.m, self.config = m, m.config

        def get_image_features(self, *a, **k):
            o = self.m.get_image_features(*a, **k)
            return o if torch.is_tensor(o) else o.pooler_output

        def get_text_features(self, *a, **k):
            o = self.m.get_text_features(*a, **k)
            return o if torch.is_tensor(o) else o.pooler_output

    metric = tm.CLIPScore(model_name_or_path=lambda: (TensorFeatures(model), proc))  # a callable: no hub
    prompt = "Q"  # on this tiny model: positive cosines for some frames, negative for others
    ours = [clip_t(clip, f[None], prompt) for f in frames]
    assert max(ours) > 0.01 and min(ours) < -0.01
    for f, c in zip(frames, ours):
        ref = metric(torch.from_numpy(f).permute(2, 0, 1), prompt).item() / 100
        metric.reset()
        # CLIPScore clamps at 0 and multiplies by 100; CLIP-T keeps the raw cosine
        assert max(c, 0.0) == pytest.approx(ref, abs=5e-3)


def test_clip_i_is_the_mean_over_all_pairs(tiny, clip):
    frames = smooth_video(3, seed=1)
    refs = [smooth_video(1, 48, 40, seed=7)[0], smooth_video(1, 36, 36, seed=8)[0]]
    e_f, e_r = clip.images(frames), [clip.images(r[None])[0] for r in refs]
    want = np.mean([F.cosine_similarity(r, f, dim=0).item() for r in e_r for f in e_f])
    assert clip_i(clip, frames, refs) == pytest.approx(want, abs=1e-5)
    # and the embeddings themselves match the processor loop
    _, _, ims = _loop_clip_embeddings(tiny, frames, "x")
    assert F.cosine_similarity(e_f, ims).min() > 0.999


def test_pickscore_is_the_models_own_logit(tiny):
    from transformers import AutoImageProcessor, CLIPModel, CLIPTokenizer

    ps = load_pickscore(str(tiny["pickscore"]), processor=str(tiny["pickscore"]), device="cpu", local_files_only=True)
    frames = smooth_video(3, seed=2)
    model = CLIPModel.from_pretrained(str(tiny["pickscore"]), local_files_only=True).eval()
    proc = AutoImageProcessor.from_pretrained(str(tiny["pickscore"]), local_files_only=True)
    tok = CLIPTokenizer.from_pretrained(str(tiny["pickscore"]), local_files_only=True)
    with torch.no_grad():
        out = model(**tok(["a red car"], return_tensors="pt"),
                    pixel_values=proc(images=[Image.fromarray(f) for f in frames], return_tensors="pt")["pixel_values"])
    want = out.logits_per_image[:, 0].mean().item()  # logit_scale.exp() * cosine, per frame
    assert pickscore(ps, frames, "a red car") == pytest.approx(want, rel=5e-3, abs=5e-2)


def test_aesthetic_quality_against_a_hand_computation(tiny):
    scorer = load_aesthetic(tiny["aesthetic_head"], str(tiny["aesthetic_clip"]), device="cpu", local_files_only=True)
    frames = smooth_video(3, seed=4)
    sd = torch.load(tiny["aesthetic_head"], weights_only=True)
    vals = []
    for f in frames:
        e = scorer.clip.images(f[None])[0]
        e = e / e.norm()
        vals.append((sd["weight"][0] @ e + sd["bias"][0]).item() / 10)
    assert aesthetic_quality(scorer, frames) == pytest.approx(np.mean(vals) * 100, rel=1e-5)


def test_missing_aesthetic_head_is_a_model_load_error(tiny, tmp_path):
    with pytest.raises(ModelLoadError, match="aesthetic-head"):
        load_aesthetic(tmp_path / "nope.pth", str(tiny["aesthetic_clip"]), device="cpu")


# ---------------------------------------------------------------- DINO family
@pytest.mark.parametrize("key", ["dino", "dino_v1"])
def test_dino_i_uses_the_cls_of_the_last_hidden_state(tiny, key):
    from transformers import AutoImageProcessor, AutoModel

    emb = load_dino(str(tiny[key]), device="cpu", local_files_only=True)
    frames, ref = smooth_video(3, seed=5), smooth_video(1, 44, 44, seed=9)[0]
    model = AutoModel.from_pretrained(str(tiny[key]), local_files_only=True).eval()
    proc = AutoImageProcessor.from_pretrained(str(tiny[key]), local_files_only=True)
    if key == "dino_v1":  # DreamVideo's preprocessing (shorter side 256, crop 224), not the checkpoint's processor
        ref_t = _dreamvideo_reference()
        inputs = lambda im: {"pixel_values": ref_t(im)[None], "interpolate_pos_encoding": True}
    else:
        inputs = lambda im: proc(images=im, return_tensors="pt")
    with torch.no_grad():
        cls = [model(**inputs(Image.fromarray(x))).last_hidden_state[0, 0] for x in [ref, *frames]]
        if key == "dino_v1":  # pooler_output (dense + tanh) is a different vector: make sure we do not use it
            pooled = model(**proc(images=Image.fromarray(ref), return_tensors="pt")).pooler_output[0]
            assert F.cosine_similarity(pooled, cls[0], dim=0) < 0.99
    want = np.mean([F.cosine_similarity(cls[0], c, dim=0).item() for c in cls[1:]])
    assert dino_i(emb, frames, [ref]) == pytest.approx(want, abs=5e-3)


def test_subject_consistency_vbench_loop(tiny):
    emb = load_subject_consistency_model(str(tiny["dino_v1"]), device="cpu", local_files_only=True)
    frames = smooth_video(5, 40, 56, seed=6)
    feats = [F.normalize(emb.images(f[None])[0], dim=-1) for f in frames]  # frame by frame, as VBench
    total, first, former = 0.0, feats[0], feats[0]
    for cur in feats[1:]:
        total += (max(0.0, (former @ cur).item()) + max(0.0, (first @ cur).item())) / 2
        former = cur
    assert subject_consistency(emb, frames) == pytest.approx(total / 4 * 100, abs=1e-3)
    # position embeddings are interpolated as in facebookresearch/dino (scale factor (n + 0.1) / sqrt(N))
    e = emb.model.embeddings
    pos = e.interpolate_pos_encoding(torch.zeros(1, 1 + 28 * 39, 32), 224, 313)
    grid = e.position_embeddings[0, 1:].reshape(4, 4, 32).permute(2, 0, 1)[None]
    want = F.interpolate(grid, scale_factor=(28.1 / 4, 39.1 / 4), mode="bicubic")[0].permute(1, 2, 0).reshape(-1, 32)
    assert pos.shape == (1, 1 + 28 * 39, 32) and torch.allclose(pos[0, 1:], want)
    hf = F.interpolate(grid, size=(28, 39), mode="bicubic")[0].permute(1, 2, 0).reshape(-1, 32)
    assert not torch.allclose(pos[0, 1:], hf, atol=1e-4)  # the transformers variant really differs
    const = np.repeat(frames[:1], 6, axis=0)
    assert subject_consistency(emb, const) == pytest.approx(100.0, abs=1e-3)


# ---------------------------------------------------------------- motion fidelity
def _walks(n, t, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.cumsum(torch.randn(n, t, 2, generator=g), dim=1)


def _line(direction, t=5):
    """One track moving one pixel per frame in direction (dx, dy)."""
    return torch.arange(t, dtype=torch.float64)[:, None] * torch.tensor(direction, dtype=torch.float64)


RIGHT, UP = (1.0, 0.0), (0.0, -1.0)


def test_released_variant_on_asymmetric_hand_computed_cases():
    # three generated tracks moving right; reference tracks: one right, two up. Similarity generated x
    # reference = [[1, 0, 0]] * 3; minus the identity: rows [0, 0, 0], [1, -1, 0], [1, 0, -1]; best per
    # generated track 0, 1, 1 -> mean 2/3
    gen = torch.stack([_line(RIGHT)] * 3)
    ref = torch.stack([_line(RIGHT), _line(UP), _line(UP)])
    assert motion_fidelity(gen, ref) == pytest.approx(200 / 3)
    assert motion_fidelity(gen, ref, "released") == pytest.approx(66.6667, abs=1e-4)
    # the roles swapped: per reference track its best generated track: rows [0, 1, 1], [0, -1, 0], [0, 0, -1]
    assert motion_fidelity(gen, ref, "reference-to-generated") == pytest.approx(100 / 3)
    # the reverse case: generated one right and two up, reference three right -> rows [0, 1, 1], [0, -1, 0], ...
    assert motion_fidelity(ref, gen) == pytest.approx(100 / 3)
    # two-sided, halved: generated->reference 1 for all three; reference->generated (1 + 0 + 0) / 3
    assert motion_fidelity(gen, ref, "two-sided") == pytest.approx(50 * (1 + 1 / 3))
    # unequal counts (the released code needs equal ones): eye(2, 3); generated right, up
    gen2 = torch.stack([_line(RIGHT), _line(UP)])
    # similarity [[1, 0, 0], [0, 1, 1]] - eye -> [[0, 0, 0], [0, 0, 1]] -> (0 + 1) / 2
    assert motion_fidelity(gen2, ref) == pytest.approx(50.0)
    with pytest.raises(SmraboothError, match="variant"):
        motion_fidelity(gen, ref, "paper")


def _released_by_hand(gen, ref):
    """The released score written as loops over tracks and steps (cosines of per-step displacements)."""
    gen, ref = gen.numpy(), ref.numpy()
    best = []
    for i in range(len(gen)):
        sims = []
        for j in range(len(ref)):
            cos = []
            for t in range(gen.shape[1] - 1):
                a, b = gen[i, t + 1] - gen[i, t], ref[j, t + 1] - ref[j, t]
                cos.append(float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)))
            sims.append(np.mean(cos) - (1.0 if i == j else 0.0))
        best.append(max(sims))
    return 100 * float(np.mean(best))


def _walks(n, t, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.cumsum(torch.randn(n, t, 2, generator=g, dtype=torch.float64), dim=1)


def test_identical_random_walks_score_below_100_as_released():
    walks = _walks(8, 12, 0)
    want = _released_by_hand(walks, walks)
    # the identity removes each track's own match, so the score is that of its best OTHER track (or 0)
    assert 0 < want < 100
    assert motion_fidelity(walks, walks.clone()) == pytest.approx(want, abs=1e-9)
    assert motion_fidelity(walks, walks.clone(), "two-sided") == pytest.approx(100.0)
    other = _walks(6, 12, 1)
    assert motion_fidelity(other, walks) == pytest.approx(_released_by_hand(other, walks), abs=1e-9)


def test_shared_motion_and_reversed_motion():
    grid = torch.rand(5, 1, 2, dtype=torch.float64) * 50
    steps = torch.cumsum(torch.randn(1, 8, 2, dtype=torch.float64), dim=1)
    same = torch.cat([grid, grid + steps], 1)  # all points share one motion: another track matches fully
    reversed_ = torch.cat([grid, grid - steps], 1)
    for v in ("released", "two-sided", "reference-to-generated"):
        assert motion_fidelity(same, same, v) == pytest.approx(100.0)
    assert motion_fidelity(reversed_, same, "two-sided") == pytest.approx(-100.0)
    assert motion_fidelity(reversed_, same, "released") == pytest.approx(-100.0)


def test_static_track_gives_no_nan():
    walks = _walks(3, 6, 1)
    static = torch.full((1, 6, 2), 7.0, dtype=torch.float64)
    gen = torch.cat([walks, static])
    for v in ("released", "two-sided", "reference-to-generated"):
        assert np.isfinite(motion_fidelity(gen, walks, v))
        assert np.isfinite(motion_fidelity(static, static, v))
    assert motion_fidelity(static, walks, "two-sided") == pytest.approx(50 * (0 + 0))


def test_grid_queries_are_cotrackers_grid_in_video_pixels():
    h, w = 48, 80
    q = grid_queries(h, w, 55)
    # CoTracker: a 55 x 55 grid in its 384 x 512 input with margin 512 / 64 = 8, tracks scaled back by
    # (W - 1) / 511 and (H - 1) / 383; row-major (x fastest)
    xs = [(8 + (512 - 16) * j / 54) * (w - 1) / 511 for j in range(55)]
    ys = [(8 + (384 - 16) * i / 54) * (h - 1) / 383 for i in range(55)]
    assert q.shape == (55 * 55, 2)
    assert q[:55, 0].tolist() == pytest.approx(xs, abs=1e-4) and q[::55, 1].tolist() == pytest.approx(ys, abs=1e-4)
    qb = grid_queries(h, w, 55, box=(10, 20, 30, 40))
    assert 0 < len(qb) < len(q) and (qb[:, 0] >= 10).all() and (qb[:, 1] <= 40).all()
    with pytest.raises(SmraboothError, match="box"):
        grid_queries(64, 64, 5, box=(0.1, 0.1, 0.2, 0.2))


def test_cotracker_is_queried_at_its_own_grid_without_a_support_grid():
    from smrabooth.metrics.tracking import CoTrackerTracker

    calls = []

    class FakePredictor:  # records how the predictor is called; tracks = queries, not moving
        def _compute_sparse_tracks(self, video, queries, add_support_grid=None, **kw):
            calls.append((video.shape, queries.clone(), add_support_grid))
            t = video.shape[1]
            return queries[:, None, :, 1:].expand(-1, t, -1, -1), torch.ones(1, t, queries.shape[1], dtype=torch.bool)

    frames = np.zeros((3, 48, 80, 3), np.uint8)
    q = grid_queries(48, 80, 55)
    tracks, visible = CoTrackerTracker(FakePredictor(), "cpu")(frames, q)
    shape, sent, support = calls[0]
    assert shape == (1, 3, 3, 48, 80) and support is False
    assert sent[0, :, 0].eq(0).all()  # all queried on frame 0
    # the predictor scales queries by (512 - 1) / (W - 1): they land exactly on its own grid points
    model_x = sent[0, :55, 1] * 511 / 79
    assert model_x.tolist() == pytest.approx([8 + 496 * j / 54 for j in range(55)], abs=1e-3)
    assert tracks.shape == (3, 55 * 55, 2) and visible.all()
    CoTrackerTracker(FakePredictor(), "cpu", support_grid=True)(frames, q)
    assert calls[1][2] is True


# ---------------------------------------------------------------- built-in tracker
def square_video(t=8, h=48, w=56, start=(10.0, 12.0), step=(1.5, 0.75), size=10):
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        x0, y0 = start[0] + step[0] * i, start[1] + step[1] * i
        xs, ys = np.arange(w)[None, :], np.arange(h)[:, None]
        # anti-aliased square: coverage of each pixel, so sub-pixel positions show in the image
        cx = np.clip(np.minimum(xs + 1, x0 + size) - np.maximum(xs, x0), 0, 1)
        cy = np.clip(np.minimum(ys + 1, y0 + size) - np.maximum(ys, y0), 0, 1)
        frames[i] = (cx * cy * 255).round().astype(np.uint8)[..., None]
    return frames


def centroid_flow(image1, image2):
    """Exact flow of a rigidly translating bright square: the shift of its intensity centroid, everywhere."""
    def centroid(im):
        m = im.mean(1)
        h, w = m.shape[-2:]
        ys, xs = torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32)
        tot = m.sum((-2, -1))
        return torch.stack([(m * xs).sum((-2, -1)) / tot, (m * ys[:, None]).sum((-2, -1)) / tot], -1)
    d = centroid(image2) - centroid(image1)  # (B, 2)
    return d[:, :, None, None].expand(-1, -1, *image1.shape[-2:]).clone()


def test_flow_tracker_follows_a_translating_square():
    frames = square_video()
    q = torch.tensor([[12.0, 14.0], [15.0, 17.0], [19.0, 21.0]])  # points on the square in frame 0
    tracks, visible = FlowTracker(centroid_flow, device="cpu")(frames, q)
    assert tracks.shape == (8, 3, 2) and visible.all()
    truth = q[None] + torch.arange(8)[:, None, None] * torch.tensor([1.5, 0.75])
    assert (tracks - truth).abs().max() < 1.0


def test_flow_tracker_marks_forward_backward_failures_occluded():
    frames = square_video(t=4)

    def wrong(image1, image2):  # forward flow fine; backward flow zero on the right half: inconsistent there
        f = centroid_flow(image1, image2)
        f[1, :, :, 28:] = 0
        return f

    q = torch.tensor([[10.0, 10.0], [40.0, 10.0]])
    _, visible = FlowTracker(wrong, device="cpu")(frames, q)
    # |f + b|^2 = 1.5^2 + 0.75^2 = 2.8 > 0.01 * 2.8 + 0.5 on the right half only
    assert visible[:, 0].all() and not visible[1:, 1].any()


def test_points_leaving_the_frame_are_invisible_not_clamped():
    frames = square_video(t=6, step=(1.5, 0.75))
    q = torch.tensor([[53.0, 20.0], [20.0, 20.0]])  # near the right border (w = 56), and well inside
    tracks, visible = FlowTracker(centroid_flow, device="cpu")(frames, q)
    truth = q[None] + torch.arange(6)[:, None, None] * torch.tensor([1.5, 0.75])
    assert (tracks - truth).abs().max() < 1.0  # the leaving point keeps moving past the border
    assert tracks[-1, 0, 0] > 55 and visible[:2, 0].all() and not visible[2:, 0].any() and visible[:, 1].all()


def test_motion_fidelity_of_videos_with_the_flow_tracker():
    fwd = square_video(t=6, step=(1.5, 0.75))
    back = square_video(t=6, start=(30.0, 25.0), step=(-1.5, -0.75))
    tracker = FlowTracker(centroid_flow, device="cpu")
    # every point shares one motion under this flow (none is clamped at the border), so another track
    # always matches fully despite the identity
    assert motion_fidelity_videos(fwd, fwd, tracker, grid_size=9) == pytest.approx(100.0, abs=1e-3)
    assert motion_fidelity_videos(back, fwd, tracker, grid_size=9) == pytest.approx(-100.0, abs=1e-3)
    box = (8, 8, 40, 36)
    with pytest.raises(SmraboothError, match="frames"):
        motion_fidelity_videos(fwd, square_video(t=8), tracker, grid_size=5, length="error")
    assert motion_fidelity_videos(fwd, square_video(t=11, step=(0.75, 0.375)), tracker, grid_size=5, box=box,
                                  length="resample") == pytest.approx(100.0, abs=1e-3)


# ---------------------------------------------------------------- dropped tracks and reference length
# Five query points over three frames (two steps each): right, right, up, left, and down-then-right.
STEPS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
FIVE = [("right", "right"), ("right", "right"), ("up", "up"), ("left", "left"), ("down", "right")]


def five_tracks():
    tracks = torch.zeros(5, 3, 2, dtype=torch.float64)
    for i, moves in enumerate(FIVE):
        tracks[i, 0] = torch.tensor([10.0 * i, 20.0])
        for t, m in enumerate(moves):
            tracks[i, t + 1] = tracks[i, t] + torch.tensor(STEPS[m])
    return tracks


def _released_by_point(gen, ref, gen_points, ref_points):
    """The released formula as loops, each track knowing its query point: for each generated track the best
    reference track, the pair of the same query point lowered by 1."""
    best = []
    for i, p in zip(range(len(gen)), gen_points):
        sims = []
        for j, q in zip(range(len(ref)), ref_points):
            cos = []
            for t in range(gen.shape[1] - 1):
                a, b = (gen[i, t + 1] - gen[i, t]).numpy(), (ref[j, t + 1] - ref[j, t]).numpy()
                cos.append(float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)))
            sims.append(np.mean(cos) - (1.0 if p == q else 0.0))
        best.append(max(sims))
    return 100 * float(np.mean(best))


def scripted_tracker(gen_visible, ref_visible):
    """Returns the five tracks for both videos (told apart by their first pixel: 1 generated, 2 reference),
    with the given visibility per track."""
    def tracker(frames, queries):
        visible = gen_visible if frames[0, 0, 0, 0] == 1 else ref_visible
        return five_tracks().transpose(0, 1).float(), torch.tensor(visible)[None].expand(3, -1)
    return tracker


def test_dropped_tracks_keep_the_identity_pairing_of_query_points():
    """Identical motion. By hand (corr = mean over the two steps of the cosine; the pair of one point - 1):
    generated point 0 occluded, 1-4 kept: point 1 (right) best is point 0 (right) = 1; 2 (up): 0 (right or
    left, or the down-then-right track: -0.5); 3 (left): 0; 4 (down, right): 0.5 with points 0 or 1 -> 1.5 / 4
    = 37.50. Reference point 0 occluded instead, all five generated kept: 1, 0.5, 0, 0, 0.5 -> 40.00. Pairing
    by row after dropping (the old fault) gave 100.00 and 90.00."""
    gen_frames, ref_frames = np.ones((3, 8, 8, 3), np.uint8), np.full((3, 8, 8, 3), 2, np.uint8)
    on = [True] * 5
    cases = [([False, True, True, True, True], on, 37.5), (on, [False, True, True, True, True], 40.0)]
    for gen_visible, ref_visible, want in cases:
        got = motion_fidelity_videos(gen_frames, ref_frames, scripted_tracker(gen_visible, ref_visible), grid_size=2,
                                     drop_occluded=True)
        gen_points = [i for i in range(5) if gen_visible[i]]
        ref_points = [i for i in range(5) if ref_visible[i]]
        t = five_tracks()
        assert got == pytest.approx(want, abs=1e-9)
        assert got == pytest.approx(_released_by_point(t[gen_points], t[ref_points], gen_points, ref_points), abs=1e-9)
    # nothing dropped: the released score of the five (points 0, 1 match each other; 4 matches 0.5)
    assert motion_fidelity_videos(gen_frames, ref_frames, scripted_tracker(on, on), grid_size=2,
                                  drop_occluded=True) == pytest.approx(100 * (1 + 1 + 0 + 0 + 0.5) / 5)
    # without the flag an occluded track is scored like any other
    assert motion_fidelity_videos(gen_frames, ref_frames, scripted_tracker([False] + [True] * 4, on),
                                  grid_size=2) == pytest.approx(50.0)


def test_query_point_ids_against_the_loops_on_random_walks():
    walks, other = _walks(7, 9, 3), _walks(7, 9, 4)
    gen_points, ref_points = [0, 2, 3, 6], [1, 2, 4, 5, 6]
    got = motion_fidelity(other[gen_points], walks[ref_points], "released", torch.tensor(gen_points),
                          torch.tensor(ref_points))
    assert got == pytest.approx(_released_by_point(other[gen_points], walks[ref_points], gen_points, ref_points),
                                abs=1e-9)
    swapped = motion_fidelity(other[gen_points], walks[ref_points], "reference-to-generated", torch.tensor(gen_points),
                              torch.tensor(ref_points))
    assert swapped == pytest.approx(_released_by_point(walks[ref_points], other[gen_points], ref_points, gen_points),
                                    abs=1e-9)


def test_the_reference_length_rule():
    """first (default): the reference's first frames, as the paper compares its 49 generated frames with the
    clips' first 49; a shorter reference is an error naming the fix; resample and error as before."""
    fwd = square_video(t=6, step=(1.5, 0.75))
    turn = np.concatenate([square_video(t=6, step=(1.5, 0.75)), square_video(t=5, start=(17.5, 15.75),
                                                                             step=(-1.5, -0.75))[1:]])
    tracker = FlowTracker(centroid_flow, device="cpu")
    # the first 6 frames of the 10-frame reference move as the generated video does; the rest turns back
    assert motion_fidelity_videos(fwd, turn, tracker, grid_size=5) == pytest.approx(100.0, abs=1e-3)
    assert motion_fidelity_videos(fwd, turn, tracker, grid_size=5, length="resample") < 50
    with pytest.raises(SmraboothError, match="has only 6.*--mf-length resample"):
        motion_fidelity_videos(square_video(t=8), fwd, tracker, grid_size=5)
    with pytest.raises(SmraboothError, match="--mf-length first"):
        motion_fidelity_videos(fwd, turn, tracker, grid_size=5, length="error")
