"""Stage 2: the motion LoRA, trained with flow matching on the whole video plus MoRA (docs/method.md).

    L = w(t) * (L_flow + L_debiased) + alpha * L_MoRA
    L_flow     = mean (u - v)^2 over the whole video latent
    L_debiased = mean ((a u - b u[f*]) - (a v - b v[f*]))^2, f* a random latent frame, a = sqrt(b^2 + 1)
                 (MotionDirector's appearance-debiased loss; off under `paper`)
    L_MoRA     = | SEA-RAFT(decode(window of z0_hat)) - SEA-RAFT(reference frames) |_1   (align/mora.py)

w(t) is the timestep weight (schedules.timestep_weights; 1 under `paper`). z0_hat = z_t - sigma * u is
the one-step clean estimate. One window of `window` latents per MoRA step; its start cycles through
align.mora.window_starts. Gradients reach the LoRA through the frozen VAE decoder (checkpointed) and the
frozen SEA-RAFT. Prompt embeddings, video latents and the reference flows are computed once and cached.

With `spatial_steps` > 0 (the authors' scripts as they are written, not as they run: docs/method.md,
Recipes) a second, spatial LoRA sits in the same transformer. Training cycles through two phases until `steps`:
    phase 1, spatial_steps:  the spatial LoRA alone (the motion LoRA at scale 0) on ONE random frame of
                             the clip: w(t) * mean (u - v)^2
    phase 2, temporal_steps: the motion LoRA, with the spatial LoRA at scale 1 and frozen, on the clip: L
Which phase a step is in, and where its MoRA window starts, are functions of the step alone, so a
resumed run continues exactly. The motion LoRA is the file used at inference; the spatial one is saved
beside it for inspection.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from ..align.mora import (
    FLOW_UNITS,
    MORA_DECODES,
    MORA_FRAME_RANGES,
    MORA_REFERENCES,
    WINDOW_WRAPS,
    decode_window,
    decoded_window_flows,
    mora_loss,
    one_step_z0,
    reference_flows,
    window_ref_flows,
    window_source_frames,
    window_starts,
)
from ..backbones import backbone_of
from ..backbones.wan22 import EXPERT_CHOICES
from ..config import setting
from ..data.cache import cache_key, cached, default_cache_dir, file_digest, model_digest
from ..data.motion import (
    CLIP_TIMINGS,
    MotionExample,
    check_frame_count,
    encode_frame_latents,
    load_motion_frames,
)
from ..data.tokens import MOTION_TOKENS, folder_token
from ..data.transforms import RESIZE_FILTERS
from ..errors import SmraboothError
from ..lora.inject import lora_layers, set_lora_scales
from ..lora.targets import parse_layer_types
from ..models.searaft import check_flow_model
from ..models.vae_decode import CHECKPOINT_MODES
from ..recipes import DEFAULT_RECIPE, RECIPES, get_recipe
from ..run_folder import abandons_staging
from ..schedules import TIMESTEP_ROUNDINGS, TIMESTEP_WEIGHTS, training_table
from ..validation import check_choice, check_multiple, check_number, check_train_settings
from .common import (
    LORA_DTYPES,
    LoopSettings,
    add_lora_adapter,
    add_second_lora_adapter,
    autocast_enabled,
    check_inputs,
    compile_blocks,
    data_files,
    make_validator,
    sample_timesteps,
    train_loop,
    training_vae_dtype,
    warn_untokened_captions,
)
from .denoisers import TrainedDenoisers
from .memory import MEMORY_HELP, MEMORY_MODES, apply_memory_policy
from .session import training_session
from .subject import EXPERT_HELP, export_files

FINAL_NAME = "motion_lora.safetensors"
SPATIAL_NAME = "spatial_lora.safetensors"
ADAPTER = "motion"  # with a spatial LoRA: the temporal one
SPATIAL_ADAPTER = "spatial"
_R = RECIPES[DEFAULT_RECIPE].motion


@dataclass
class MotionTrainConfig:
    """Every setting of a motion run (written to config.yaml; `train-motion` has a flag for each). The
    method's defaults come from the recipe (recipes.MotionRecipe, docs/method.md stage 2): build a config
    for another recipe with `from_recipe`. Help of the settings both trainers share: TRAIN_SETTING_HELP."""

    model: str = setting("", cli=False)  # --model comes with the other model flags (cli/common.py)
    data: str = setting("", "motion folder: *.mp4 + metadata.csv (file_name,text; or the authors' video,prompt)")
    out: str = ""
    recipe: str = setting(DEFAULT_RECIPE, choices=tuple(RECIPES))
    expert: str | None = setting(None, EXPERT_HELP, choices=EXPERT_CHOICES)
    steps: int = _R.steps
    rank: int = _R.rank
    alpha: float = _R.alpha
    lr: float = _R.lr
    frames: int = setting(_R.frames, "frames per clip (4k+1)")
    height: int = setting(_R.height, "clip height (multiple of 16)")
    width: int = setting(_R.width, "clip width (multiple of 16)")
    fps: float = setting(_R.fps, "the rate clips are resampled to (--clip-timing resample)")
    clip_timing: str = setting(_R.clip_timing, "which frames of a clip: first = the file's first --frames frames as "
                               "they are, at its own rate (the authors'); resample = resampled to --fps",
                               choices=CLIP_TIMINGS)
    loop: bool = setting(False, "repeat clips shorter than --frames instead of stopping with an error")
    flow_model: str = setting(_R.flow_model, "SEA-RAFT checkpoint: hub id, folder, .safetensors or official .pth")
    flow_iters: int | None = setting(None, "SEA-RAFT refinement iterations (none: the checkpoint's own, spring-M: 4)")
    use_mora: bool = setting(True, "MoRA on (--no-mora: the paper's 'w/o MoRA' ablation and plain motion LoRA)",
                             flag="mora")
    mora_weight: float = setting(_R.mora_weight, "alpha of L_MoRA")
    window: int = setting(_R.window, "latent frames decoded per MoRA window")
    window_stride: int = setting(_R.window_stride, "latents between successive window starts")
    drop_frames: int = setting(_R.drop_frames, "decoded warm-up frames dropped from each window")
    mora_frame_range: str = setting(_R.mora_frame_range, "what SEA-RAFT sees: matched = the decoded prediction in "
                                    "[0, 255] like the reference; authors = the prediction in [-255, 255], the "
                                    "reference in [0, 255] (their code)", choices=MORA_FRAME_RANGES)
    mora_decode: str = setting(_R.mora_decode, "how MoRA decodes its window: whole = one pass; tiled = in 30x52-latent "
                               "tiles blended over their overlaps (the authors' pipeline)", choices=MORA_DECODES)
    layer_types: tuple[str, ...] = _R.layer_types
    shift: float = _R.shift
    timestep_weight: str = setting(_R.timestep_weight, choices=TIMESTEP_WEIGHTS)
    warmup_steps: int = _R.warmup_steps
    warmup_factor: float = _R.warmup_factor
    lora_dtype: str = setting(_R.lora_dtype, choices=tuple(LORA_DTYPES))
    vae_dtype: str = setting(_R.vae_dtype, cli=False)  # --vae-dtype comes with the model flags (cli/common.py)
    timestep_rounding: str = setting(_R.timestep_rounding, choices=TIMESTEP_ROUNDINGS)
    resize_filter: str = setting(_R.resize_filter, choices=RESIZE_FILTERS)
    spatial_steps: int = setting(_R.spatial_steps, "phase-1 steps per cycle: a spatial LoRA trained alone on one "
                                 "random frame, as the authors' scripts describe it (their code as it runs trains "
                                 "none; 0: no spatial LoRA, every step trains the motion LoRA)")
    temporal_steps: int = setting(_R.temporal_steps, "phase-2 steps per cycle: the motion LoRA on the clip, the "
                                  "spatial LoRA on and frozen")
    spatial_layer_types: tuple[str, ...] = setting(_R.spatial_layer_types, "comma list of the spatial LoRA's layer "
                                                   "types")
    spatial_rank: int = setting(_R.spatial_rank, "the spatial LoRA's rank")
    spatial_alpha: float = setting(_R.spatial_alpha, "the spatial LoRA's alpha")
    debiased: bool = setting(_R.debiased, "add the appearance-debiased loss (MotionDirector's) to the flow loss")
    debias_beta: float = setting(_R.debias_beta, "b of the debiased loss (a = sqrt(b^2 + 1))")
    window_wrap: str = setting(_R.window_wrap, "MoRA window starts: fit = every window that fits the clip; reach = "
                               "back to 0 once a window reaches the clip's last latent (the authors')",
                               choices=WINDOW_WRAPS)
    flow_units: str = setting(_R.flow_units, "MoRA's L1 in pixels, or size: x per width plus y per height (the "
                              "authors')", choices=FLOW_UNITS)
    mora_max_sigma: float = setting(_R.mora_max_sigma, "MoRA only on draws with sigma at most this (1: every draw, "
                                    "the paper; near sigma 1 the one-step estimate is a blur that does not move)")
    mora_reference: str = setting(_R.mora_reference, "MoRA's target: frames = the flows of the reference clip's "
                                  "frames (the paper); decoded = of the clip's clean latent decoded window by window "
                                  "as the estimate is (reachable through a VAE that loses fast motion)",
                                  choices=MORA_REFERENCES)
    seed: int = 0
    memory: str = setting("auto", MEMORY_HELP, choices=MEMORY_MODES)
    gradient_checkpointing: bool = True
    vae_checkpointing: str = setting(
        "block", "what the MoRA decode recomputes in backward (models/vae_decode.py): nothing (fastest, most "
        "memory), each latent frame, or each frame and each decoder block (least memory)", choices=CHECKPOINT_MODES)
    vae_store_frames: int = setting(0, "store the decode of the last N latent frames of the MoRA window instead of "
                                    "recomputing it (with --vae-checkpointing frame|block: about one frame's "
                                    "activations each, for speed)")
    flow_chunk: int | None = setting(None, "SEA-RAFT frame pairs per checkpointed call in MoRA (none: all pairs at "
                                     "once, stored; a small number saves memory only where SEA-RAFT, not the DiT, "
                                     "sets the peak)")
    compile: bool = False
    mixed_precision: str = setting("auto", choices=("auto", "bf16", "no"))
    weight_decay: float = _R.weight_decay
    max_grad_norm: float = _R.max_grad_norm
    checkpoint_every: int = 100
    batch_size: int = _R.batch_size  # samples per process per optimizer step (computed one after the other)
    gradient_accumulation: int = 1  # times batch_size per process per step; effective batch: train/distributed.py
    validate_every: int = 0
    validation_prompt: str | None = None
    validation_steps: int = 30
    save_dtype: str = setting("bf16", choices=("bf16", "fp32", "fp16"))
    cache_dir: str | None = None

    @classmethod
    def from_recipe(cls, recipe: str = DEFAULT_RECIPE, **settings) -> MotionTrainConfig:
        """The recipe's motion stage as the defaults, `settings` on top."""
        return cls(recipe=recipe, **{**dataclasses.asdict(get_recipe(recipe).motion), **settings})

    @property
    def two_phase(self) -> bool:
        return self.spatial_steps > 0

    def phase_of(self, step: int) -> tuple[str, int]:
        """('spatial' or 'temporal', how many temporal steps come before `step`): a function of the step."""
        if not self.two_phase:
            return "temporal", step
        cycle = self.spatial_steps + self.temporal_steps
        done, within = divmod(step, cycle)
        before = done * self.temporal_steps + max(0, within - self.spatial_steps)
        return ("spatial" if within < self.spatial_steps else "temporal"), before

    def validate(self) -> MotionTrainConfig:
        get_recipe(self.recipe)
        if self.flow_chunk == 0:  # what --flow-chunk 0 meant before `none`: all pairs at once
            self.flow_chunk = None
        check_train_settings(self)
        check_number("--warmup-steps", self.warmup_steps, 0, 10**7, integer=True)
        check_number("--warmup-factor", self.warmup_factor, 0, 1, low_open=True)
        check_number("--spatial-steps", self.spatial_steps, 0, 10**7, integer=True)
        check_number("--temporal-steps", self.temporal_steps, 1 if self.spatial_steps else 0, 10**7, integer=True)
        check_number("--spatial-rank", self.spatial_rank, 1, 4096, integer=True)
        check_number("--spatial-alpha", self.spatial_alpha, 0, 1e5, low_open=True)
        check_number("--debias-beta", self.debias_beta, 0, 100)
        check_choice("--timestep-weight", self.timestep_weight, TIMESTEP_WEIGHTS)
        check_choice("--window-wrap", self.window_wrap, WINDOW_WRAPS)
        check_choice("--flow-units", self.flow_units, FLOW_UNITS)
        if self.expert is not None:
            check_choice("--expert", self.expert, EXPERT_CHOICES)
        check_choice("--mora-reference", self.mora_reference, MORA_REFERENCES)
        check_number("--mora-max-sigma", self.mora_max_sigma, 0, 1, low_open=True)
        check_choice("--clip-timing", self.clip_timing, CLIP_TIMINGS)
        check_choice("--mora-frame-range", self.mora_frame_range, MORA_FRAME_RANGES)
        check_choice("--mora-decode", self.mora_decode, MORA_DECODES)
        check_number("--frames", self.frames, 1, 1001, integer=True)
        check_frame_count(self.frames)
        check_multiple("--height", self.height, 16, 16, 2048)
        check_multiple("--width", self.width, 16, 16, 2048)
        check_number("--fps", self.fps, 0, 240, low_open=True)
        check_number("--flow-iters", self.flow_iters, 1, 100, integer=True, optional=True)
        check_number("--mora-weight", self.mora_weight, 0, 1000)
        check_number("--window", self.window, 1, 1000, integer=True)
        check_number("--window-stride", self.window_stride, 1, 1000, integer=True)
        check_number("--drop-frames", self.drop_frames, 0, 1000, integer=True)
        check_number("--vae-store-frames", self.vae_store_frames, 0, 1000, integer=True)
        check_number("--flow-chunk", self.flow_chunk, 1, 10000, integer=True, optional=True)
        if self.use_mora:
            check_flow_model(self.flow_model)
        if self.validate_every and not self.validation_prompt:
            raise SmraboothError("--validate-every needs --validation-prompt")
        if self.vae_checkpointing is True or self.vae_checkpointing is False:  # configs written before "block"
            self.vae_checkpointing = "frame" if self.vae_checkpointing else "none"
        if self.vae_checkpointing not in CHECKPOINT_MODES:
            raise SmraboothError(f"--vae-checkpointing {self.vae_checkpointing!r}: "
                                 f"choose {', '.join(CHECKPOINT_MODES)}")
        if self.use_mora:  # clear errors for windows that do not fit the clip
            window_starts(1 + (self.frames - 1) // 4, self.window, self.window_stride, self.window_wrap)
            window_source_frames(0, self.window, self.drop_frames)
        self.layer_types = parse_layer_types(self.layer_types)
        self.spatial_layer_types = parse_layer_types(self.spatial_layer_types)
        return self


def precompute_examples(cfg: MotionTrainConfig, pipe, flow_fn, items, model_id: str, cache_dir,
                        flow_id: str | None, progress: bool = True) -> list[MotionExample]:
    """Latents of each clip and SEA-RAFT flows of its frames, cached by content hash and settings."""
    from tqdm.auto import tqdm

    examples = []
    # by the files of the VAE and of SEA-RAFT, not their names: a model replaced in place misses the cache
    vae = model_digest(model_id, ("vae",), cache_dir)
    flow = model_digest(flow_id, (), cache_dir) if cfg.use_mora and flow_id else None
    for item in tqdm(items, desc="caching latents and flows", leave=False, disable=not progress):
        # settings away from the first defaults enter the key (the caches of those stay valid)
        rules = {"frame_latents": True if cfg.two_phase else None,
                 "resize_filter": cfg.resize_filter if cfg.resize_filter != "bicubic" else None,
                 "clip_timing": cfg.clip_timing if cfg.clip_timing != "resample" else None}
        key = cache_key(kind="motion-clip", model=vae, video=file_digest(item.video_path), frames=cfg.frames,
                        fps=cfg.fps if cfg.clip_timing == "resample" else None, size=(cfg.height, cfg.width),
                        loop=cfg.loop, vae_dtype=str(pipe.vae.dtype), flow=flow, flow_iters=cfg.flow_iters,
                        **{k: v for k, v in rules.items() if v is not None})

        def compute(item=item):
            frames = load_motion_frames(item.video_path, cfg.frames, cfg.fps, cfg.height, cfg.width, cfg.loop,
                                        timing=cfg.clip_timing, resize_filter=cfg.resize_filter)
            out = {"latent": backbone_of(pipe).encode_video(pipe, frames)}
            if cfg.two_phase:  # phase 1 trains on single frames: each one encoded as a one-frame video
                out["frame_latents"] = encode_frame_latents(pipe.vae, frames)
            if cfg.use_mora:
                out["flows"] = reference_flows(frames.to(pipe._execution_device), flow_fn).float()
            return out

        t = cached(cache_dir, key, compute)
        examples.append(MotionExample(t["latent"], t.get("flows"), item.text, t.get("frame_latents")))
    return examples


def debiased_loss(u: torch.Tensor, target: torch.Tensor, frame: int, beta: float = 1.0) -> torch.Tensor:
    """MotionDirector's appearance-debiased loss for one clip (C, T, h, w): latent frame `frame`, times b,
    taken from every frame, times a = sqrt(b^2 + 1), of prediction and target alike, then the MSE. What all
    frames share (the appearance) counts less than what changes between them."""
    a = math.sqrt(beta**2 + 1)
    u_d = a * u - beta * u[:, frame : frame + 1]
    v_d = a * target - beta * target[:, frame : frame + 1]
    return ((u_d.float() - v_d.float()) ** 2).mean()


def _velocity(transformer, z0, sigma, noise, text_embeds, predict=None):
    """(u, z_t, target) of flow matching for latents (1, C, T, h, w) at sigma (1,). `predict(denoiser, z_t, sigma,
    text)`: the backbone's forward (backbones: Wan2.2 TI2V-5B's per-token timesteps); None: Wan2.1's."""
    from ..backbones.wan21 import WAN21

    z_t = WAN21.add_noise(z0, noise, sigma)
    u = (predict or partial(WAN21.predict, None))(transformer, z_t, sigma, text_embeds)
    return u, z_t, WAN21.training_target(z0, noise, sigma)


def motion_losses(cfg: MotionTrainConfig, transformer, vae, flow_fn, ex: MotionExample, text_embeds: torch.Tensor,
                  sigma: torch.Tensor, noise: torch.Tensor, start: int | None, weight: torch.Tensor | float = 1.0,
                  debias_frame: int | None = None, predict=None, decode=decode_window) -> dict[str, torch.Tensor]:
    """{'flow', 'debiased' (cfg.debiased, at latent frame `debias_frame`), 'mora' (cfg.use_mora), 'loss'} for one
    clip at one sigma; MoRA on the window at latent `start`. `weight`: the timestep weight, applied to 'flow' and
    'debiased' (logged as they enter the loss), never to MoRA. No 'mora' above `cfg.mora_max_sigma`; under
    `mora_reference="decoded"` `ex.flows` is `decoded_window_flows`' {start: flows}. `predict`: _velocity's;
    `decode`: the backbone's differentiable window decode (Backbone.decode_window)."""
    u, z_t, target = _velocity(transformer, ex.latent[None], sigma, noise, text_embeds, predict)
    losses = {"flow": weight * ((u - target) ** 2).mean()}
    losses["loss"] = losses["flow"]
    if cfg.debiased:
        losses["debiased"] = weight * debiased_loss(u[0], target[0], debias_frame, cfg.debias_beta)
        losses["loss"] = losses["loss"] + losses["debiased"]
    if not cfg.use_mora or (cfg.mora_max_sigma < 1 and float(sigma.max()) > cfg.mora_max_sigma):
        return losses
    z0_hat = one_step_z0(z_t, u, sigma)
    frames = decode(vae, z0_hat, start, cfg.window, cfg.drop_frames, checkpoint=cfg.vae_checkpointing,
                    store_last=cfg.vae_store_frames, frame_range=cfg.mora_frame_range, tiling=cfg.mora_decode)
    ref = ex.flows[start] if isinstance(ex.flows, dict) else window_ref_flows(ex.flows, start, cfg.window,
                                                                              cfg.drop_frames)
    losses["mora"] = mora_loss(frames, ref, flow_fn, chunk=cfg.flow_chunk, units=cfg.flow_units)
    losses["loss"] = losses["loss"] + cfg.mora_weight * losses["mora"]
    return losses


def spatial_losses(transformer, z0: torch.Tensor, text_embeds: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
                   weight: torch.Tensor | float = 1.0, predict=None) -> dict[str, torch.Tensor]:
    """Phase 1: w(t) * mean (u - v)^2 on one frame (1, C, 1, h, w)."""
    u, _, target = _velocity(transformer, z0, sigma, noise, text_embeds, predict)
    flow = weight * ((u - target) ** 2).mean()
    return {"spatial": flow, "loss": flow}


@abandons_staging
def train_motion(cfg: MotionTrainConfig, pipe, flow_model=None, model_id: str | None = None,
                 flow_id: str | None = None, resume: bool = False, overwrite: bool = False,
                 progress: bool = True, explicit: set[str] | None = None) -> Path:
    """Train a motion LoRA into `cfg.out`; returns the path of the final LoRA file; `explicit` as train_subject's.

    `flow_model` is a frozen SEA-RAFT (models.searaft) when MoRA is on. `pipe` and `flow_model` are
    returned as they were given, also on an error (train.borrow): while training, the text encoder waits
    on the CPU and the transformer carries the adapter "motion" (and "spatial" with two phases).
    """
    backbone = backbone_of(pipe)

    def check(cfg):
        backbone.check_train_config("motion", cfg)
        if cfg.use_mora and flow_model is None:
            raise SmraboothError("MoRA needs a SEA-RAFT flow model (or pass --no-mora)")
        vae_dtype = training_vae_dtype(cfg, pipe) or pipe.vae.dtype
        return apply_memory_policy(cfg, "motion", next(iter(backbone.denoisers(pipe).values())),
                                   backbone.generation_device(pipe), explicit, vae_bytes=vae_dtype.itemsize,
                                   vae=pipe.vae)

    with training_session(cfg, pipe, backbone.final_names("motion", cfg)[0], resume, overwrite, explicit,
                          models=[flow_model], check=check) as run:
        return _train_motion(run, pipe, backbone, flow_model, model_id, flow_id, progress)


def _train_motion(run, pipe, backbone, flow_model, model_id: str | None, flow_id: str | None, progress: bool) -> Path:
    from ..data.folders import read_motion_folder
    from ..models.searaft import compute_flow

    cfg, run_dir, parallel, times = run.cfg, run.run_dir, run.parallel, run.times
    trainees = TrainedDenoisers.select(backbone, pipe, cfg.expert)
    model_id = model_id or cfg.model
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    items = read_motion_folder(cfg.data)
    check_inputs(run_dir, data_files(cfg.data, items), run.resume, parallel)
    warn_untokened_captions([it.text for it in items], MOTION_TOKENS, "motion")
    vae = pipe.vae
    device = next(trainees.first.parameters()).device
    texts = [it.text for it in items] + ([cfg.validation_prompt, ""] if cfg.validate_every else [])
    embeds = backbone.encode_captions(pipe, texts, model_id, cache_dir)
    times.mark("captions")

    def flow_fn(image1, image2):
        return compute_flow(flow_model, image1, image2, iters=cfg.flow_iters)

    examples = precompute_examples(cfg, pipe, flow_fn, items, model_id, cache_dir, flow_id or cfg.flow_model,
                                   progress=progress)
    times.mark("precompute")
    if pipe.text_encoder is not None:
        pipe.text_encoder.to("cpu")  # umT5-XXL: 11 GB in bf16, not needed any more
    if not cfg.validate_every:
        trainees.park_idle()  # an A14B expert this run does not train (validation videos need both)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    vae.requires_grad_(False)
    if flow_model is not None:
        flow_model.requires_grad_(False).eval()

    seeds = trainees.lora_seeds(cfg.seed)
    lora_dtype = LORA_DTYPES[cfg.lora_dtype]
    params = []
    for expert, module in trainees.experts.items():
        params += add_lora_adapter(module, ADAPTER, cfg.rank, cfg.alpha, cfg.layer_types, seed=seeds[expert],
                                   dtype=lora_dtype)
    adapters: tuple[str, ...] = (ADAPTER,)
    spatial_params = []
    if cfg.two_phase:
        motion_params = params
        for expert, module in trainees.experts.items():
            spatial_params += add_second_lora_adapter(module, SPATIAL_ADAPTER, cfg.spatial_rank, cfg.spatial_alpha,
                                                      cfg.spatial_layer_types, seed=seeds[expert] + 1,
                                                      dtype=lora_dtype)
        params = motion_params + spatial_params  # one AdamW; the idle LoRA gets no gradient, so no update
        adapters = (ADAPTER, SPATIAL_ADAPTER)
        layers = [layer for module in trainees.experts.values() for layer in lora_layers(module)]

        def set_phase(phase: str) -> None:
            """spatial: the motion LoRA off and frozen, the spatial one trained; temporal: both on, the spatial
            one frozen."""
            set_lora_scales(layers, {ADAPTER: 0.0 if phase == "spatial" else 1.0, SPATIAL_ADAPTER: 1.0})
            for p in motion_params:
                p.requires_grad_(phase == "temporal")
            for p in spatial_params:
                p.requires_grad_(phase == "spatial")
    for module in trainees.experts.values():
        if cfg.gradient_checkpointing:
            module.enable_gradient_checkpointing()
        if cfg.compile:
            compile_blocks(module)
        module.train()
    transformer = trainees.module  # what checkpoints hold the LoRAs of
    predict = partial(backbone.predict, pipe)

    use_autocast = autocast_enabled(cfg.mixed_precision, device)
    sigmas, weights = trainees.sigma_table(*training_table(cfg.shift, cfg.timestep_weight, cfg.timestep_rounding))
    latent_frames = examples[0].latent.shape[1]
    starts = window_starts(latent_frames, cfg.window, cfg.window_stride, cfg.window_wrap) if cfg.use_mora else []
    text_on_device = {t: e.to(device, trainees.first.dtype) for t, e in embeds.items()}
    on_device = [MotionExample(e.latent.to(device), None if e.flows is None else e.flows.to(device), e.text,
                               None if e.frame_latents is None else e.frame_latents.to(device)) for e in examples]
    if cfg.use_mora and cfg.mora_reference == "decoded":  # per window start, computed once (a few decodes)
        for e in on_device:
            e.flows = decoded_window_flows(vae, e.latent, starts, flow_fn, cfg.window, cfg.drop_frames)

    def compute_losses(step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        phase, temporal_step = cfg.phase_of(step)
        if cfg.two_phase:
            set_phase(phase)
        ex = on_device[int(torch.randint(len(on_device), (1,), generator=gen))]
        sigma, weight = (v.to(device) for v in sample_timesteps(sigmas, weights, 1, gen))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
            if phase == "spatial":  # one random frame of the clip, as a one-frame video
                frame = int(torch.randint(len(ex.frame_latents), (1,), generator=gen))
                noise = torch.randn(ex.frame_latents[frame].shape, generator=gen).to(device)[None]
                losses = spatial_losses(trainees.at(sigma), ex.frame_latents[frame][None], text_on_device[ex.text],
                                        sigma, noise, weight[0], predict)
            else:
                noise = torch.randn(ex.latent.shape, generator=gen).to(device)
                debias = int(torch.randint(latent_frames, (1,), generator=gen)) if cfg.debiased else None
                start = starts[temporal_step % len(starts)] if cfg.use_mora else None
                losses = motion_losses(cfg, trainees.at(sigma), vae, flow_fn, ex, text_on_device[ex.text], sigma,
                                       noise, start, weight[0], debias, predict, backbone.decode_window)
        if cfg.two_phase:
            losses["phase"] = torch.tensor(1.0 if phase == "spatial" else 2.0)
        return losses

    validate = None
    if cfg.validate_every:
        validate = make_validator(pipe, run_dir, embeds[cfg.validation_prompt], embeds[""], frames=cfg.frames,
                                  height=cfg.height, width=cfg.width, steps=cfg.validation_steps, seed=cfg.seed,
                                  shift=cfg.shift, fps=round(cfg.fps))

    generator = torch.Generator().manual_seed(cfg.seed)
    settings = LoopSettings(steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            max_grad_norm=cfg.max_grad_norm, checkpoint_every=cfg.checkpoint_every,
                            validate_every=cfg.validate_every, progress=progress, warmup_steps=cfg.warmup_steps,
                            warmup_factor=cfg.warmup_factor)
    times.mark("setup")
    train_loop(run_dir, settings, transformer, adapters, params, {}, compute_losses, generator, resume=run.resume,
               validate=validate, parallel=parallel)
    times.mark("loop")
    from ..models.wan import parse_dtype

    if cfg.two_phase:  # the transformer keeps both adapters, on and at scale 1
        set_lora_scales(layers, {ADAPTER: 1.0, SPATIAL_ADAPTER: 1.0})
        for p in params:
            p.requires_grad_(True)
    token = folder_token([it.text for it in items], MOTION_TOKENS)

    def write():
        dtype = parse_dtype(cfg.save_dtype)
        export_files(trainees, run_dir, FINAL_NAME, ADAPTER, cfg.rank, cfg.alpha, "motion", dtype,
                     {"steps": cfg.steps, "mora": cfg.use_mora, "recipe": cfg.recipe, "token": token})
        if cfg.two_phase:
            export_files(trainees, run_dir, SPATIAL_NAME, SPATIAL_ADAPTER, cfg.spatial_rank, cfg.spatial_alpha,
                         "motion-spatial", dtype, {"steps": cfg.steps, "recipe": cfg.recipe, "token": token})

    return run.finish(backbone.final_names("motion", cfg)[0], write)
