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


def test_dino_transforms_match_the_processors(tiny):
    from transformers import AutoImageProcessor

    frames = smooth_video(2, 40, 52)
    for key in ("dino", "dino_v1"):
        proc = AutoImageProcessor.from_pretrained(str(tiny[key]), local_files_only=True)
        ref = proc(images=[Image.fromarray(f) for f in frames], return_tensors="pt")["pixel_values"]
        ours = load_dino(str(tiny[key]), device="cpu", local_files_only=True).transform(frames)
        assert ours.shape == ref.shape == (2, 3, 32, 32)
        assert (ours - ref).abs().max() < 3 / 255 / 0.22


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
    with torch.no_grad():
        cls = [model(**proc(images=Image.fromarray(x), return_tensors="pt")).last_hidden_state[0, 0]
               for x in [ref, *frames]]
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


def test_motion_fidelity_known_answers():
    walks = _walks(6, 9, 0)
    assert motion_fidelity(walks, walks.clone(), "paper") == pytest.approx(100.0)
    assert motion_fidelity(-walks, walks, "paper") < 100  # reversed random walks never match
    grid = torch.rand(5, 1, 2) * 50
    steps = torch.cumsum(torch.randn(1, 8, 2), dim=1)
    same = torch.cat([grid, grid + steps], 1)  # all points share one motion
    reversed_ = torch.cat([grid, grid - steps], 1)
    assert motion_fidelity(same, same, "paper") == pytest.approx(100.0)
    assert motion_fidelity(reversed_, same, "paper") == pytest.approx(-100.0)
    # released code: reference x generated minus identity, max per reference track
    assert motion_fidelity(same, same, "code") == pytest.approx(100.0)
    assert motion_fidelity(reversed_, same, "code") == pytest.approx(-100.0)


def test_motion_fidelity_two_sided_value():
    t = torch.arange(5, dtype=torch.float64)[:, None]
    right = torch.cat([t, 0 * t], 1)[None]
    up = torch.cat([0 * t, t], 1)[None]
    gen, ref = right, torch.cat([right, up])
    # gen->ref: 1 ; ref->gen: (1 + 0) / 2 ; half their sum
    assert motion_fidelity(gen, ref, "paper") == pytest.approx(100 * 0.5 * (1 + 0.5))
    # code variant: c(ref, gen) = [[1], [0]] minus eye(2, 1) = [[0], [0]] -> 0
    assert motion_fidelity(gen, ref, "code") == pytest.approx(0.0)


def test_static_track_gives_no_nan():
    walks = _walks(3, 6, 1)
    static = torch.full((1, 6, 2), 7.0)
    gen = torch.cat([walks, static])
    for v in ("paper", "code"):
        assert np.isfinite(motion_fidelity(gen, walks, v))
        assert np.isfinite(motion_fidelity(static, static, v))
    assert motion_fidelity(static, walks, "paper") == pytest.approx(50 * (0 + 0))


def test_grid_queries_and_box():
    q = grid_queries(64, 64, 55)
    assert q.shape == (55 * 55, 2) and q[:, 0].min() == pytest.approx(1.0) and q[:, 0].max() == pytest.approx(63.0)
    qb = grid_queries(64, 64, 55, box=(10, 20, 30, 40))
    assert 0 < len(qb) < len(q) and (qb[:, 0] >= 10).all() and (qb[:, 1] <= 40).all()
    with pytest.raises(SmraboothError, match="box"):
        grid_queries(64, 64, 5, box=(0.1, 0.1, 0.2, 0.2))


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


def test_motion_fidelity_of_videos_with_the_flow_tracker():
    fwd = square_video(t=6, step=(1.5, 0.75))
    back = square_video(t=6, start=(30.0, 25.0), step=(-1.5, -0.75))
    tracker = FlowTracker(centroid_flow, device="cpu")
    box = (8, 8, 40, 36)  # points that stay inside the frame (clamped points at the border stop moving)
    assert motion_fidelity_videos(fwd, fwd, tracker, grid_size=9, box=box) == pytest.approx(100.0, abs=1e-3)
    assert motion_fidelity_videos(back, fwd, tracker, grid_size=9, box=box) == pytest.approx(-100.0, abs=1e-3)
    with pytest.raises(SmraboothError, match="frames"):
        motion_fidelity_videos(fwd, square_video(t=8), tracker, grid_size=5)
    assert motion_fidelity_videos(fwd, square_video(t=11, step=(0.75, 0.375)), tracker, grid_size=5, box=box,
                                  length="resample") == pytest.approx(100.0, abs=1e-3)
