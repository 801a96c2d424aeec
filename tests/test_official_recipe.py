"""The `official` recipe (the authors' released code as it runs): its formulas against hand-computed values, its
trainers (one temporal motion LoRA, bf16 LoRAs, batch 2, warm-up, bell weight) and the two-phase training their
scripts describe (`--spatial-steps`), resuming bit-exactly in either phase.

scripts/check_official_parity.py compares the same formulas against the authors' own functions (it needs
their checkout); the values below are worked out by hand or with plain Python floats instead."""

import math

import pytest
import torch

from smrabooth.align.mora import flow_l1, window_starts
from smrabooth.data.subject import mask_to_latent_grid
from smrabooth.errors import SmraboothError
from smrabooth.lora.files import load_lora
from smrabooth.recipes import DEFAULT_RECIPE, OFFICIAL, OFFICIAL_SAMPLER, PAPER, RECIPES
from smrabooth.schedules import timestep_weights, training_sigmas
from smrabooth.train.common import LoopSettings, read_log
from smrabooth.train.motion import MotionTrainConfig, debiased_loss
from smrabooth.train.subject import SubjectTrainConfig


# ---------------------------------------------------------------- the recipe
def test_official_recipe_is_the_authors_code_as_it_runs():
    """The facts of the authors' code as it runs, written out once more on purpose (docs/method.md, Recipes)."""
    s, m = OFFICIAL.subject, OFFICIAL.motion
    assert DEFAULT_RECIPE == "official" and RECIPES["official"] is OFFICIAL and OFFICIAL.sampler is OFFICIAL_SAMPLER
    assert (s.layer_types, s.rank, s.alpha, s.lr, s.weight_decay, s.resolution) == (("q", "k", "ffn.0"), 32, 32.0,
                                                                                      1e-4, 0.01, 512)
    assert (s.shift, s.timestep_weight, s.warmup_steps, s.warmup_factor, s.max_grad_norm) == (1.0, "bell", 3, 1 / 3,
                                                                                              0.0)
    assert (s.steps, s.batch_size, s.mask_rule, s.sura_layer, s.sura_weight, s.projector_width) == (
        1000, 2, "bilinear", 2, 0.05, 2048)
    assert (s.train_projector, s.lora_dtype, s.timestep_rounding, s.resize_filter, s.encoder_resize) == (
        False, "bf16", "bf16", "bilinear", "bicubic")
    # motion: the temporal LoRA alone (their phase 1 trains nothing), 5 epochs x 50 steps of 2 clips
    assert (m.layer_types, m.rank, m.alpha) == (("v", "o", "ffn.0", "ffn.2"), 64, 64.0)
    assert (m.spatial_steps, m.steps, m.batch_size, m.warmup_steps) == (0, 250, 2, 0)
    assert (m.debiased, m.debias_beta, m.mora_weight, m.flow_units, m.window_wrap) == (True, 1.0, 1.0, "size", "reach")
    assert (m.window, m.window_stride, m.drop_frames, m.frames, m.height, m.width) == (6, 2, 5, 49, 320, 576)
    assert (m.clip_timing, m.mora_frame_range, m.mora_decode, m.lora_dtype, m.timestep_rounding, m.resize_filter) == (
        "first", "authors", "tiled", "bf16", "bf16", "bilinear")
    # the spatial LoRA their scripts describe, for --spatial-steps N
    assert (m.spatial_layer_types, m.spatial_rank, m.spatial_alpha) == (("q", "k", "ffn.0"), 32, 32.0)
    # the paper recipe keeps today's behaviour: every new setting off
    p, q = PAPER.subject, PAPER.motion
    assert (p.timestep_weight, p.batch_size, p.warmup_steps, p.mask_rule, p.train_projector) == ("none", 1, 0, "area",
                                                                                                 True)
    assert (p.lora_dtype, p.timestep_rounding, p.resize_filter, p.encoder_resize) == ("fp32", "none", "bicubic",
                                                                                      "antialias")
    assert (q.spatial_steps, q.debiased, q.flow_units, q.window_wrap, q.timestep_weight) == (0, False, "pixels", "fit",
                                                                                             "none")
    assert q.mora_decode == "whole"
    assert (q.clip_timing, q.fps, q.mora_frame_range, q.lora_dtype, q.timestep_rounding) == (
        "resample", 15.0, "matched", "fp32", "none")


def test_configs_default_to_the_official_recipe_and_from_recipe_picks_one():
    assert SubjectTrainConfig().recipe == MotionTrainConfig().recipe == "official"
    assert SubjectTrainConfig().sura_layer == 2 and MotionTrainConfig().spatial_steps == 0
    assert not MotionTrainConfig().two_phase
    paper = MotionTrainConfig.from_recipe("paper", steps=7)
    assert (paper.recipe, paper.steps, paper.spatial_steps, paper.shift) == ("paper", 7, 0, 5.0)
    with pytest.raises(SmraboothError, match="unknown recipe 'nope'"):
        SubjectTrainConfig(recipe="nope").validate()
    with pytest.raises(SmraboothError, match="--timestep-weight 'cosine': choose none, bell"):
        SubjectTrainConfig(timestep_weight="cosine").validate()
    with pytest.raises(SmraboothError, match="--temporal-steps 0"):
        MotionTrainConfig(spatial_steps=3, temporal_steps=0).validate()
    # the settings of their code as it runs: a bad value (from --config, which skips argparse) is one line
    for cfg, message in [(SubjectTrainConfig(lora_dtype="fp16"), "--lora-dtype 'fp16': choose fp32, bf16"),
                         (SubjectTrainConfig(timestep_rounding="fp8"), "--timestep-rounding 'fp8': choose none, bf16"),
                         (SubjectTrainConfig(resize_filter="lanczos"), "--resize-filter 'lanczos': choose bicubic"),
                         (SubjectTrainConfig(encoder_resize="area"), "--encoder-resize 'area': choose antialias"),
                         (MotionTrainConfig(clip_timing="last"), "--clip-timing 'last': choose resample, first"),
                         (MotionTrainConfig(mora_frame_range="unit"), "--mora-frame-range 'unit': choose matched")]:
        with pytest.raises(SmraboothError, match=message):
            cfg.validate()


# ---------------------------------------------------------------- formulas, by hand
def test_bell_timestep_weight_by_hand():
    sigmas = training_sigmas(1.0)
    # the table: sigma_i = 1 - i/1000 exactly (no shift)
    assert torch.allclose(sigmas.double(), torch.tensor([1 - i / 1000 for i in range(1000)], dtype=torch.float64),
                          atol=1e-7)
    g = [math.exp(-2 * ((1000 * (1 - i / 1000) - 500) / 1000) ** 2) for i in range(1000)]
    low = min(g)  # at t = 1000 (i = 0): exp(-0.5)
    assert low == pytest.approx(math.exp(-0.5))
    mean = sum(x - low for x in g) / 1000
    w = timestep_weights(sigmas, "bell").double()
    assert float(w[0]) == 0.0
    assert float(w[500]) == pytest.approx((1 - math.exp(-0.5)) / mean, rel=1e-5)  # t = 500: the peak, ~1.58
    assert float(w[999]) == pytest.approx((math.exp(-2 * 0.499**2) - low) / mean, rel=1e-4)  # t = 1: ~0.005
    assert float(w[250]) == pytest.approx((math.exp(-2 * 0.25**2) - low) / mean, rel=1e-5)  # t = 750
    assert float(w.mean()) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(timestep_weights(sigmas, "none"), torch.ones(1000))


def test_bilinear_mask_rule_counts_every_touched_cell():
    """A 16x16 mask onto a 2x2 grid: a bilinear resize (align_corners=False) samples each cell at pixel 8k + 3.5,
    i.e. between pixels 8k+3 and 8k+4; any non-zero sample counts. The area rule gives the covered fraction."""
    mask = torch.zeros(1, 16, 16)
    mask[0, 3, 11] = 1  # row 3 -> cell row 0; column 11 -> cell column 1 (11.5 lies between 11 and 12)
    grid = mask_to_latent_grid(mask, (2, 2), "bilinear")
    assert grid.shape == (1, 1, 2, 2) and grid[0, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert mask_to_latent_grid(mask, (2, 2), "area")[0, 0].tolist() == [[0.0, 1 / 64], [0.0, 0.0]]
    corner = torch.zeros(1, 16, 16)
    corner[0, 0, 0] = 1  # never sampled by the bilinear resize: the authors' rule drops it
    assert mask_to_latent_grid(corner, (2, 2), "bilinear").sum() == 0


def test_bilinear_mask_rule_is_the_authors_data_path(tmp_path):
    """Their mask: opened as RGB, resized bilinearly with its image (torchvision on a PIL image: Pillow's
    bilinear), / 255, channel 0, then bilinearly onto the latent grid, > 0: written out here with Pillow and torch.
    A 1-pixel stroke at column 35 of a 96x96 mask reaches the 4x4 grid of a 32x32 crop that way; the binary rule
    (a nearest resize keeps columns 1, 4, ..., 34, 37) loses it."""
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image

    from smrabooth.data.subject import load_image_and_mask

    mask = np.zeros((96, 96), np.uint8)
    mask[10:81, 35] = 255  # the stroke
    mask[60:90, 60:90] = 255  # a block, so the binary rule's mask is not empty
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(tmp_path / "image.png")
    theirs = np.asarray(Image.open(tmp_path / "mask.png").convert("RGB").resize((32, 32), Image.BILINEAR), np.float32)
    theirs = torch.from_numpy(theirs / 255).permute(2, 0, 1)[None]
    theirs = (F.interpolate(theirs, size=(4, 4), mode="bilinear", align_corners=False) > 0)[:, :1].float()
    _, soft = load_image_and_mask(tmp_path / "image.png", tmp_path / "mask.png", 32, "bilinear")
    ours = mask_to_latent_grid(soft, (4, 4), "bilinear")
    assert torch.equal(ours[0], theirs[0]) and ours[0, 0, :, 1].tolist() == [1.0] * 4
    _, binary = load_image_and_mask(tmp_path / "image.png", tmp_path / "mask.png", 32, "area")
    assert mask_to_latent_grid(binary, (4, 4), "area")[0, 0, :, 1].tolist() == [0.0] * 4


def test_bicubic_encoder_resize_is_the_authors_dinov2_input():
    """Their DINOv2 input: the image / 255, ImageNet-normalised, then plain bicubic (no antialias, no clamp)."""
    from types import SimpleNamespace

    import torch.nn.functional as F

    from smrabooth.models.dinov2 import IMAGENET_MEAN, IMAGENET_STD, dinov2_patch_features

    class Recorder:
        config = SimpleNamespace(patch_size=2, num_register_tokens=0)
        device, dtype = torch.device("cpu"), torch.float32
        embeddings = SimpleNamespace()

        def __call__(self, pixel_values):
            self.seen = pixel_values
            return SimpleNamespace(last_hidden_state=torch.zeros(1, 17, 3))

    image = torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    theirs = F.interpolate((image - mean) / std, size=(8, 8), mode="bicubic", align_corners=False)
    encoder = Recorder()
    dinov2_patch_features(encoder, image, (4, 4), "bicubic")
    torch.testing.assert_close(encoder.seen, theirs)
    dinov2_patch_features(encoder, image, (4, 4), "antialias")
    assert (encoder.seen - theirs).abs().max() > 1e-2


def test_bicubic_encoder_resize_resamples_dinov2_positions_as_their_loader():
    """Their loader resamples DINOv2's position table once to the patch grid with antialiased bicubic (timm's
    resample_abs_pos_embed); transformers resamples it at each call without antialiasing. Reference: a copy of the
    model holding the antialiased table at the grid's size, which transformers then uses as it is. The borrowed
    model is left as it was."""
    import copy

    import torch.nn.functional as F
    from transformers import Dinov2Config, Dinov2Model

    from smrabooth.models.dinov2 import dinov2_patch_features

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                          patch_size=2, image_size=14)  # a 7x7 table, resampled to the 4x4 grid (downsampled)
    encoder = Dinov2Model(config).eval()
    table = encoder.embeddings.position_embeddings.data
    grid = table[:, 1:].reshape(1, 7, 7, 16).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False, antialias=True)
    reference = copy.deepcopy(encoder)
    reference.embeddings.position_embeddings.data = torch.cat([table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 16, 16)], 1)
    image = torch.rand(1, 3, 10, 10)

    theirs = dinov2_patch_features(reference, image, (4, 4), "bicubic")
    ours = dinov2_patch_features(encoder, image, (4, 4), "bicubic")
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert "interpolate_pos_encoding" not in vars(encoder.embeddings)  # handed back as it was
    assert (dinov2_patch_features(encoder, image, (4, 4), "antialias") - ours).abs().max() > 1e-3


def test_bf16_timestep_rounding_is_a_bf16_cast_of_the_drawn_timestep():
    """Their timestep: table[i].to(bf16), then the noise level and the weight of the table entry nearest to it.
    t = 999 and 998 become 1000 (sigma 1, weight 0); 997 -> 996; below 256 every whole t is exact in bf16."""
    from smrabooth.schedules import training_table

    plain_s, plain_w = training_table(1.0, "bell")
    sigmas, weights = training_table(1.0, "bell", "bf16")
    t = [round(float(x) * 1000) for x in sigmas]
    assert t[:4] == [1000, 1000, 1000, 996] and t[999] == 1 and t[800] == 200
    for i in (0, 1, 2, 3, 500, 750, 999):  # each entry is the plain table's entry at the bf16 timestep
        j = round(1000 - float(torch.tensor(1000 - i, dtype=torch.float32).to(torch.bfloat16)))
        assert (float(sigmas[i]), float(weights[i])) == (float(plain_s[j]), float(plain_w[j])), i
    assert float((weights == 0).float().sum()) == 3  # t = 1000 drawn 3 times in 1000, not once
    assert torch.equal(training_table(5.0, "none", "none")[0], training_sigmas(5.0))


def test_debiased_loss_by_hand():
    """One channel, two latent frames, one cell: u = (1, 3), v = (0, 0), f* = 0, b = 1, a = sqrt 2:
    a u - b u[0] = (sqrt2 - 1, 3 sqrt2 - 1), the target's is 0; MSE = mean of the squares."""
    u = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1)
    v = torch.zeros(1, 2, 1, 1)
    r2 = math.sqrt(2)
    expected = ((r2 - 1) ** 2 + (3 * r2 - 1) ** 2) / 2
    assert float(debiased_loss(u, v, 0, 1.0)) == pytest.approx(expected, rel=1e-6)
    # f* = 1: (sqrt2 - 3, 3 sqrt2 - 3)
    assert float(debiased_loss(u, v, 1, 1.0)) == pytest.approx(((r2 - 3) ** 2 + (3 * r2 - 3) ** 2) / 2, rel=1e-6)
    # b = 0: a = 1, the plain MSE
    assert float(debiased_loss(u, v, 0, 0.0)) == pytest.approx((1 + 9) / 2)


def test_flow_units_by_hand():
    """One pair, a 4x8 flow, the difference (dx, dy) = (4, 2) everywhere: pixels -> mean(4, 2) = 3;
    size -> 4/8 + 2/4 = 1 (x per width plus y per height, the authors' sum over the two components)."""
    pred = torch.zeros(1, 2, 4, 8)
    ref = torch.stack([torch.full((4, 8), 4.0), torch.full((4, 8), 2.0)])[None]
    assert float(flow_l1(pred, ref, "pixels")) == pytest.approx(3.0)
    assert float(flow_l1(pred, ref, "size")) == pytest.approx(1.0)
    # mean over pairs: a second pair with no difference halves it
    assert float(flow_l1(torch.cat([pred, ref]), torch.cat([ref, ref]), "size")) == pytest.approx(0.5)


def test_window_schedule_of_the_authors_over_20_steps():
    """Start 0, +2 per step, back to 0 when start + 6 reaches the latent count."""
    def authors(latents, steps=20, window=6, stride=2):
        out, start = [], 0
        for _ in range(steps):
            if start + window >= latents:
                start = 0
            out.append(start)
            start += stride
        return out

    for latents in (13, 12, 6, 9, 21):
        starts = window_starts(latents, 6, 2, "reach")
        assert [starts[k % len(starts)] for k in range(20)] == authors(latents), latents
    assert window_starts(13, 6, 2, "reach") == window_starts(13, 6, 2, "fit") == [0, 2, 4, 6]
    assert window_starts(12, 6, 2, "fit") == [0, 2, 4, 6] and window_starts(12, 6, 2, "reach") == [0, 2, 4]


def _constant_lr_factors(steps: int, scheduler_steps_per_step: int, idle_steps: int = 0) -> list[float]:
    """lr / lr0 at each optimizer step under torch's ConstantLR with its defaults, stepped
    `scheduler_steps_per_step` times per optimizer step (accelerate: once per process), after `idle_steps`
    optimizer steps that change no weight (their motion phase 1)."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.ConstantLR(opt)
    out = []
    for step in range(idle_steps + steps):
        if step >= idle_steps:
            out.append(opt.param_groups[0]["lr"])
        opt.step()
        for _ in range(scheduler_steps_per_step):
            sched.step()
    return out


def test_warmup_is_torch_constant_lr():
    """lr / 3 for the first 5 optimizer steps, as torch's ConstantLR with its defaults (the reference)."""
    settings = LoopSettings(steps=10, lr=1e-4, warmup_steps=5, warmup_factor=1 / 3)
    assert [settings.lr_at(s) / 1e-4 for s in range(10)] == pytest.approx(_constant_lr_factors(10, 1), rel=1e-12)


def test_official_warmup_is_constant_lr_stepped_by_accelerate_on_two_processes():
    """accelerate steps their ConstantLR once per process: on 2 processes lr / 3 lasts 3 optimizer steps. Their
    motion run begins with phase 1 (50 steps that change no weight, the scheduler stepping all the same), so the
    temporal LoRA never trains at lr / 3."""
    s, m = OFFICIAL.subject, OFFICIAL.motion
    for stage, idle in ((s, 0), (m, 50)):
        ours = LoopSettings(steps=20, lr=1.0, warmup_steps=stage.warmup_steps, warmup_factor=stage.warmup_factor)
        assert [ours.lr_at(k) for k in range(20)] == pytest.approx(_constant_lr_factors(20, 2, idle), rel=1e-12)
    assert _constant_lr_factors(5, 2)[:4] == pytest.approx([1 / 3] * 3 + [1])


def test_motion_phases_cycle():
    cfg = MotionTrainConfig(spatial_steps=2, temporal_steps=3)
    assert [cfg.phase_of(i) for i in range(7)] == [("spatial", 0), ("spatial", 0), ("temporal", 0), ("temporal", 1),
                                                   ("temporal", 2), ("spatial", 3), ("spatial", 3)]
    paper = MotionTrainConfig.from_recipe("paper")
    assert [paper.phase_of(i) for i in (0, 5)] == [("temporal", 0), ("temporal", 5)]


# ---------------------------------------------------------------- training, on the tiny models
def _motion(tmp_path, **kw):
    from test_train_motion import FRAMES, H, W, tiny_flow_model

    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.train.motion import train_motion

    base = {"model": "tiny", "data": str(tmp_path / "motion"), "steps": 4, "rank": 4, "alpha": 4, "spatial_rank": 2,
            "spatial_alpha": 2, "lr": 1e-3, "frames": FRAMES, "height": H, "width": W, "window": 3, "window_stride": 1,
            "drop_frames": 1, "gradient_checkpointing": False, "checkpoint_every": 1, "save_dtype": "fp32",
            "cache_dir": str(tmp_path / "cache"), "seed": 0}
    base.update(kw)
    resume = base.pop("resume", False)
    cfg = MotionTrainConfig.from_recipe("official", **base)
    return train_motion(cfg, build_tiny_wan_pipeline(), tiny_flow_model(), model_id="tiny", resume=resume,
                        progress=False)


def test_official_motion_trains_one_bf16_temporal_lora_from_the_first_step(tmp_path):
    """What their code computes: no spatial LoRA and no phases, every step on the clip at the full learning rate
    (their warm-up went by in the idle phase 1), the LoRA and its AdamW states in bf16."""
    from safetensors.torch import load_file
    from test_train_motion import make_motion_folder

    make_motion_folder(tmp_path / "motion")
    final = _motion(tmp_path, steps=2, checkpoint_every=2, batch_size=1, out=str(tmp_path / "run"))
    assert not (tmp_path / "run" / "spatial_lora.safetensors").exists()
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["lr"] for r in log] == pytest.approx([1e-3, 1e-3])
    assert all({"flow", "debiased", "mora"} <= set(r) and "phase" not in r and "spatial" not in r for r in log)
    checkpoint = tmp_path / "run" / "checkpoints" / "step-2"
    assert sorted(p.name for p in checkpoint.glob("lora*.safetensors")) == ["lora.safetensors"]
    trained = load_file(str(checkpoint / "lora.safetensors"))
    assert {v.dtype for v in trained.values()} == {torch.bfloat16}
    optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    assert {v.dtype for st in optimizer["state"].values() for k, v in st.items() if k != "step"} == {torch.bfloat16}
    lora = load_lora(final)
    assert set(lora.layer_types) == {"v", "o", "ffn.0", "ffn.2"} and lora.info["recipe"] == "official"
    assert any(float(v.abs().sum()) > 0 for k, v in lora.tensors.items() if "lora_B" in k)


def test_described_two_phase_motion_trains_two_loras_in_phases_and_resumes_exactly_in_either(tmp_path):
    """--spatial-steps 2 --temporal-steps 2 (the authors' scripts as written): steps 0-1 spatial, 2-3 temporal, 4
    spatial; a straight run of 5 steps against one stopped after step 1 (inside phase 1) and after step 3 (inside
    phase 2) and resumed each time."""
    from test_train_motion import make_motion_folder

    make_motion_folder(tmp_path / "motion")
    phases = {"spatial_steps": 2, "temporal_steps": 2, "warmup_steps": 3, "batch_size": 1}
    straight = _motion(tmp_path, steps=5, out=str(tmp_path / "straight"), **phases)
    _motion(tmp_path, steps=1, out=str(tmp_path / "resumed"), **phases)
    _motion(tmp_path, steps=3, out=str(tmp_path / "resumed"), resume=True, **phases)
    _motion(tmp_path, steps=5, out=str(tmp_path / "resumed"), resume=True, **phases)
    for name in ("motion_lora.safetensors", "spatial_lora.safetensors"):
        a, b = load_lora(tmp_path / "straight" / name), load_lora(tmp_path / "resumed" / name)
        assert a.tensors.keys() == b.tensors.keys()
        assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors), name
    log, ref = read_log(tmp_path / "resumed" / "log.jsonl"), read_log(tmp_path / "straight" / "log.jsonl")
    assert log == [{**r, "seconds": s["seconds"]} for r, s in zip(ref, log)]  # every term, step and lr
    assert [r["phase"] for r in ref] == [1, 1, 2, 2, 1]
    assert set(ref[0]) >= {"spatial", "loss", "lr"} and set(ref[2]) >= {"flow", "debiased", "mora", "loss"}
    assert [r["lr"] for r in ref] == pytest.approx([1e-3 / 3] * 3 + [1e-3] * 2)
    # the temporal LoRA is the motion LoRA, on v, o, ffn.0, ffn.2; the spatial one on q, k, ffn.0
    motion, spatial = load_lora(straight), load_lora(tmp_path / "straight" / "spatial_lora.safetensors")
    assert set(motion.layer_types) == {"v", "o", "ffn.0", "ffn.2"} and motion.rank == 4
    assert set(spatial.layer_types) == {"q", "k", "ffn.0"} and spatial.rank == 2
    assert motion.info["kind"] == "motion" and motion.info["recipe"] == "official"


def test_each_lora_changes_only_in_its_own_phase(tmp_path):
    """After 2 spatial steps the motion LoRA is still its initialisation (B = 0); after 2 more (temporal) the
    spatial LoRA is what it was after step 2."""
    from test_train_motion import make_motion_folder

    make_motion_folder(tmp_path / "motion")
    phases = {"spatial_steps": 2, "temporal_steps": 2, "batch_size": 1, "use_mora": False}
    _motion(tmp_path, steps=2, out=str(tmp_path / "a"), checkpoint_every=100, **phases)
    _motion(tmp_path, steps=4, out=str(tmp_path / "b"), checkpoint_every=100, **phases)
    a_m, b_m = load_lora(tmp_path / "a" / "motion_lora.safetensors"), load_lora(tmp_path / "b" / "motion_lora.safetensors")
    a_s, b_s = (load_lora(tmp_path / x / "spatial_lora.safetensors") for x in ("a", "b"))
    assert all(float(v.abs().sum()) == 0 for k, v in a_m.tensors.items() if "lora_B" in k)
    assert any(float(v.abs().sum()) > 0 for k, v in b_m.tensors.items() if "lora_B" in k)
    assert any(float(v.abs().sum()) > 0 for k, v in a_s.tensors.items() if "lora_B" in k)
    assert all(torch.equal(a_s.tensors[k], b_s.tensors[k]) for k in a_s.tensors)


def test_official_subject_resumes_exactly_with_batch_2_and_keeps_the_projector(tmp_path):
    from test_train_subject import RES, make_subject_folder

    from smrabooth.align.sura import build_projector
    from smrabooth.models.dinov2 import build_tiny_dinov2
    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.train.common import seeded
    from smrabooth.train.subject import train_subject

    make_subject_folder(tmp_path / "subject")

    def run(steps, out, resume=False):
        cfg = SubjectTrainConfig.from_recipe(
            "official", model="tiny", data=str(tmp_path / "subject"), out=str(tmp_path / out), steps=steps, rank=4,
            alpha=4, lr=1e-3, resolution=RES, projector_width=32, gradient_checkpointing=False, checkpoint_every=1,
            save_dtype="fp32", cache_dir=str(tmp_path / "cache"), seed=0, sura_layer=1)
        return train_subject(cfg, build_tiny_wan_pipeline(), build_tiny_dinov2(), model_id="tiny", resume=resume,
                             progress=False)

    straight = run(4, "straight")
    run(2, "resumed")
    resumed = run(4, "resumed", resume=True)
    a, b = load_lora(straight), load_lora(resumed)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert set(a.layer_types) == {"q", "k", "ffn.0"}
    log, ref = read_log(tmp_path / "resumed" / "log.jsonl"), read_log(tmp_path / "straight" / "log.jsonl")
    assert [r["loss"] for r in log] == [r["loss"] for r in ref] and "sura" in ref[0]
    # the projector is not trained (the authors' optimizer never holds it): it is its seeded initialisation
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "straight" / "projector.safetensors"))
    with seeded(1):
        fresh = build_projector(saved["0.weight"].shape[1], saved["4.weight"].shape[0], 32)
    assert all(torch.equal(saved[k], v) for k, v in fresh.state_dict().items())


def test_parity_script_names_a_wrong_checkout(tmp_path):
    """scripts/check_official_parity.py needs the authors' checkout; without one it stops with one line."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "check_official_parity.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, check=False)
    assert out.returncode != 0 and "pass a checkout of the authors' repository" in out.stderr
    assert "Traceback" not in out.stderr


def test_draw_share_is_the_share_of_the_training_table_at_or_below_a_sigma():
    """Hand-computed: the table is s' = shift s / (1 + (shift - 1) s) at s = 1 - i/1000, i = 0..999, so
    s' <= m  <=>  s <= m / (shift - (shift - 1) m). shift 1, m 0.2: i >= 800, 200 entries; shift 5, m 0.2:
    s <= 0.0476, i >= 953, 47 entries; shift 3, m 0.5: s <= 0.25, i >= 750, 250 entries."""
    from smrabooth.schedules import draw_share

    assert draw_share(0.2, 1.0) == pytest.approx(0.200)
    assert draw_share(0.2, 5.0) == pytest.approx(0.047)
    assert draw_share(0.5, 3.0) == pytest.approx(0.250)
    assert draw_share(1.0, 5.0) == 1.0
