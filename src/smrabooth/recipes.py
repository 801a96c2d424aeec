"""Every constant of the method, defined once (docs/method.md explains each).

A `Recipe` is a named, frozen set of defaults, one dataclass per stage:

    SubjectRecipe   stage 1: the subject LoRA (masked flow matching + SuRA)
    MotionRecipe    stage 2: the motion LoRA (flow matching + MoRA)
    SamplerRecipe   stage 3: generation with both LoRAs (sparse injection)

The field names of `SubjectRecipe` and `MotionRecipe` are field names of `SubjectTrainConfig` and
`MotionTrainConfig`, and those of `SamplerRecipe` of `GenerateConfig` (except `t_point`: see
`SamplerRecipe.generate_settings`), so a recipe is applied to a config with `dataclasses.replace`.
Configs, command-line defaults and help texts read their values from here; nothing else in the
package writes a number of the method.

`RECIPES["official"]` is the authors' released code (the default for training) and `RECIPES["paper"]` the
paper's text (docs/method.md, Recipes, lists every difference). Another recipe is another `Recipe(...)` entry; a behaviour
that one recipe has and another lacks is a field of its own (off in the recipes that lack it), so
any ablation can mix them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .lora.targets import ALL_LAYER_TYPES

# hub ids of the frozen encoders the losses use
DINOV2_GIANT = "facebook/dinov2-giant"  # SuRA's target features
SEARAFT_SPRING_M = "MemorySlices/Tartan-C-T-TSKH-spring540x960-M"  # MoRA's optical flow

# Training draws sigma from the sampler's schedule at this many steps (DiffSynth's training timesteps).
NUM_TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class SubjectRecipe:
    """Stage 1: the subject LoRA, on a few images (one-frame videos)."""

    steps: int = 300
    rank: int = 32
    alpha: float = 32.0
    lr: float = 1e-4
    weight_decay: float = 1e-2  # AdamW
    max_grad_norm: float = 1.0
    resolution: int = 512  # square training size
    layer_types: tuple[str, ...] = ALL_LAYER_TYPES  # where the LoRA is trained
    shift: float = 5.0  # timestep shift of the training sigma table (the sampler's)
    timestep_weight: str = "none"  # none | bell: the flow loss times w(t) (schedules.timestep_weights)
    batch_size: int = 1  # images per optimizer step (their losses averaged)
    warmup_steps: int = 0  # the first N steps run at lr * warmup_factor (torch's ConstantLR)
    warmup_factor: float = 1.0
    lora_dtype: str = "fp32"  # fp32: fp32 LoRA weights and AdamW states; bf16: both in bf16 (the authors')
    timestep_rounding: str = "none"  # none | bf16: the drawn timestep rounded to bf16 before use (the authors')
    resize_filter: str = "bicubic"  # the filter that resizes images to the training size (bilinear: the authors')
    mask_rule: str = "area"  # area: the covered fraction of each latent cell; bilinear: the authors' (data/subject.py)
    encoder: str = DINOV2_GIANT  # SuRA's frozen image encoder
    sura_weight: float = 0.05  # lambda of L_SuRA
    sura_layer: int = 0  # 0-based block whose output SuRA aligns
    projector_width: int = 2048  # hidden width of SuRA's MLP projector (REPA's)
    train_projector: bool = True  # False: the projector stays at its (seeded) initialisation
    encoder_resize: str = "antialias"  # DINOv2's input: antialias | bicubic (plain, unclamped: the authors')
    vae_dtype: str = "fp32"  # the VAE while training: fp32 | bf16 | fp16 | auto (the transformer's: the authors')


@dataclass(frozen=True)
class MotionRecipe:
    """Stage 2: the motion LoRA, on a few clips."""

    steps: int = 400
    rank: int = 64
    alpha: float = 64.0
    lr: float = 1e-4
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    frames: int = 49  # per clip (4k+1)
    height: int = 320
    width: int = 576
    fps: float = 15.0  # the rate clips are resampled to (clip_timing resample)
    clip_timing: str = "resample"  # resample: to `fps`; first: the file's first `frames` frames as they are
    layer_types: tuple[str, ...] = ALL_LAYER_TYPES  # the motion LoRA's (with a spatial LoRA: the temporal one)
    shift: float = 5.0
    timestep_weight: str = "none"  # none | bell, on the flow (and debiased) loss; never on MoRA
    batch_size: int = 1  # clips per optimizer step (one clip drawn per item; losses averaged)
    warmup_steps: int = 0
    warmup_factor: float = 1.0
    lora_dtype: str = "fp32"
    timestep_rounding: str = "none"
    resize_filter: str = "bicubic"
    # The VAE while training (the clips' encoding and MoRA's decode): fp32 | bf16 | fp16 | auto (the transformer's
    # dtype: the authors' code loads every model in the one dtype of its pipeline, bf16)
    vae_dtype: str = "fp32"
    # The spatial LoRA, as the authors' scripts describe it (not as they run: docs/method.md, Recipes): trained
    # alone on one random frame for `spatial_steps`, then frozen and active while the motion LoRA trains on the
    # clip for `temporal_steps`, cycling until `steps`. spatial_steps 0: no spatial LoRA, every step trains the
    # motion LoRA (the paper's text, and what the authors' code computes).
    spatial_steps: int = 0
    temporal_steps: int = 0  # phase-2 steps per cycle (ignored without a spatial LoRA)
    spatial_layer_types: tuple[str, ...] = ("q", "k", "ffn.0")
    spatial_rank: int = 32
    spatial_alpha: float = 32.0
    debiased: bool = False  # add MotionDirector's appearance-debiased loss to the flow loss
    debias_beta: float = 1.0  # b of the debiased loss (a = sqrt(b^2 + 1))
    flow_model: str = SEARAFT_SPRING_M  # MoRA's frozen optical-flow model
    mora_weight: float = 1.0  # alpha of L_MoRA
    window: int = 6  # latent frames decoded per MoRA window
    window_stride: int = 2  # latents between successive window starts
    window_wrap: str = "fit"  # fit: every start whose window fits; reach: back to 0 once start + window reaches the end
    drop_frames: int = 5  # decoded warm-up frames dropped from each window
    mora_frame_range: str = "matched"  # matched: both frame sets in [0, 255] for SEA-RAFT; authors: prediction [-255, 255]
    mora_decode: str = "whole"  # whole: the window decoded in one pass; tiled: in 30x52-latent tiles (the authors')
    flow_units: str = "pixels"  # pixels: L1 of flows in pixels; size: x / width and y / height, summed over x and y
    # Not in the paper (1.0 and "frames" are its method): MoRA only on draws with sigma <= mora_max_sigma (above
    # ~0.7 the one-step estimate is too blurred to move); its target the reference clip's flows ("frames") or
    # those of the clip's own clean latent decoded window by window as z0_hat is ("decoded": a target the VAE
    # can reach; the same as "frames" for a VAE that reconstructs the clip's motion)
    mora_max_sigma: float = 1.0
    mora_reference: str = "frames"


@dataclass(frozen=True)
class SamplerRecipe:
    """Stage 3: generation. `t_point` is a step of this recipe's own schedule (`steps`, `shift`); another
    step count switches at the step of the same noise level (schedules.t_point_for_sigmas)."""

    steps: int = 50
    scheduler: str = "euler"  # flow-matching Euler (sampling.make_scheduler)
    shift: float = 5.0
    guidance: float = 5.0  # classifier-free guidance scale
    frames: int = 49
    height: int = 480
    width: int = 832
    fps: float = 15.0
    negative_prompt: str | None = None  # None: empty, as WanPipeline
    injection: str = "sparse"  # sparse: the layer split and timing below; dense: both LoRAs everywhere
    t_point: int = 15  # first step with the subject LoRA at `subject_scale`
    subject_scale_early: float = 0.5  # before t_point
    subject_scale: float = 1.0  # from t_point on
    motion_scale: float = 1.0
    subject_layers: tuple[str, ...] = ("q", "k", "ffn.0")  # the subject LoRA's layers under sparse injection
    motion_layers: tuple[str, ...] = ("v", "o", "ffn.0", "ffn.2")

    def generate_settings(self) -> dict:
        """The recipe as `GenerateConfig` fields: `t_point` becomes the reference step that the sampler
        maps onto its own steps, against this recipe's schedule."""
        settings = dataclasses.asdict(self)
        settings["reference_t_point"] = settings.pop("t_point")
        settings["reference_steps"], settings["reference_shift"] = self.steps, self.shift
        return settings


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    subject: SubjectRecipe = field(default_factory=SubjectRecipe)
    motion: MotionRecipe = field(default_factory=MotionRecipe)
    sampler: SamplerRecipe = field(default_factory=SamplerRecipe)


# The negative prompt of the authors' inference script, character for character (Wan's usual Chinese
# negative prompt without three of its words).
OFFICIAL_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，"
    "多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，"
    "三条腿，背景人很多，倒着走"
)

# The authors' inference script: both LoRAs merged from step 0 (subject 0.6, motion 1.0); at step 15 of
# 50 the base weights are restored and the subject merged again at 0.8; Euler with shift 1 (their
# pipeline's default is 5, the script passes 1), so step 15 is sigma 0.70 (the paper's is 0.92).
OFFICIAL_SAMPLER = SamplerRecipe(shift=1.0, negative_prompt=OFFICIAL_NEGATIVE_PROMPT, subject_scale_early=0.6,
                                 subject_scale=0.8, motion_scale=1.0)


@dataclass(frozen=True)
class UnetRecipe:
    """The U-Net variant on ZeroScope (supplementary 5). The paper states none of these numbers;
    docs/unet.md says how each was chosen."""

    sura_weight: float = 0.1  # lambda: the DiT recipe's SuRA gradient share, measured on the tiny models
    raa_block: str = "mid"  # U-Net block whose output RAA aligns (U-REPA: the bottleneck)
    encoder_grid: int = 32  # DINOv2 patches per side (448x448 input)
    frames: int = 24  # ZeroScope's clip length
    height: int = 320
    width: int = 576
    fps: float = 8.0  # 24 frames = 3 s
    window: int = 16  # MoRA frames per step (15 flows, as the DiT's window)
    window_stride: int = 4  # window starts 0, 4, 8 cover a 24-frame clip
    guidance: float = 9.0  # TextToVideoSDPipeline's default CFG


UNET = UnetRecipe()

PAPER = Recipe("paper", "the paper's text: one LoRA per stage on all six layer types, shift 5, SuRA after block 1")

# The authors' released code, as it runs (docs/method.md, Recipes: their code as written and as it runs).
# Lengths: their subject run is 4 epochs x 100 repeats of the images on 2 processes, for their 5 photos 1,000
# optimizer steps of 2 images; their motion run is 5 epochs x 100 repeats of the clip on 2 processes, per epoch
# 50 steps of 2 clips in each of two phases. Phase 1 changes nothing (the spatial LoRA is never the active
# adapter), so the motion recipe is the 250 phase-2 steps. Here a step of batch 2 on one device stands for one
# step of the 2 processes (the same averaged gradient). Warm-up: accelerate steps their ConstantLR once per
# process, so lr/3 lasts 3 optimizer steps; in the motion run those fall in the idle phase 1 (none left).
OFFICIAL = Recipe(
    "official", "the authors' released code as it runs: subject LoRA on q,k,ffn.0 with shift 1 and the bell timestep "
    "weight, SuRA after block 3; one temporal motion LoRA with the debiased loss; bf16 LoRAs",
    subject=SubjectRecipe(steps=1000, batch_size=2, layer_types=("q", "k", "ffn.0"), shift=1.0, timestep_weight="bell",
                          warmup_steps=3, warmup_factor=1 / 3, max_grad_norm=0.0, mask_rule="bilinear", sura_layer=2,
                          train_projector=False, lora_dtype="bf16", timestep_rounding="bf16",
                          resize_filter="bilinear", encoder_resize="bicubic", vae_dtype="auto"),
    motion=MotionRecipe(steps=250, batch_size=2, layer_types=("v", "o", "ffn.0", "ffn.2"), shift=1.0,
                        timestep_weight="bell", warmup_steps=0, warmup_factor=1 / 3, max_grad_norm=0.0,
                        debiased=True, window_wrap="reach", flow_units="size", clip_timing="first",
                        mora_frame_range="authors", mora_decode="tiled", lora_dtype="bf16", timestep_rounding="bf16",
                        resize_filter="bilinear", vae_dtype="auto"),
    sampler=OFFICIAL_SAMPLER,
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (OFFICIAL, PAPER)}
DEFAULT_RECIPE = "official"  # the trainers' recipe when none is named; generate's preset for LoRAs that record none


def get_recipe(name: str) -> Recipe:
    from .errors import SmraboothError

    if name not in RECIPES:
        raise SmraboothError(f"unknown recipe {name!r}: choose from {', '.join(RECIPES)}")
    return RECIPES[name]


__all__ = [
    "DEFAULT_RECIPE",
    "DINOV2_GIANT",
    "NUM_TRAIN_TIMESTEPS",
    "OFFICIAL",
    "OFFICIAL_NEGATIVE_PROMPT",
    "OFFICIAL_SAMPLER",
    "PAPER",
    "RECIPES",
    "SEARAFT_SPRING_M",
    "UNET",
    "MotionRecipe",
    "Recipe",
    "SamplerRecipe",
    "SubjectRecipe",
    "UnetRecipe",
    "get_recipe",
]
