"""Stage 2: the motion LoRA, trained with flow matching on the whole video plus MoRA (docs/method.md).

    L = L_temporal + alpha * L_MoRA
    L_temporal = mean (u - v)^2 over the whole video latent
    L_MoRA     = | SEA-RAFT(decode(window of z0_hat)) - SEA-RAFT(reference frames) |_1   (align/mora.py)

z0_hat = z_t - sigma * u is the one-step clean estimate. One window of `window` latents per step;
its start cycles through 0, stride, 2*stride, ... Gradients reach the LoRA through the frozen VAE
decoder (checkpointed per latent frame) and the frozen SEA-RAFT. Prompt embeddings, video latents
and the reference flows are computed once and cached.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..align.mora import (
    decode_window,
    mora_loss,
    one_step_z0,
    reference_flows,
    valid_window_starts,
    window_ref_flows,
    window_source_frames,
)
from ..config import setting
from ..data.cache import cache_key, cached, default_cache_dir, file_digest, model_digest
from ..data.motion import MotionExample, check_frame_count, encode_video_latent, load_motion_frames
from ..data.tokens import MOTION_TOKENS, folder_token
from ..errors import SmraboothError
from ..lora.targets import parse_layer_types
from ..models.vae_decode import CHECKPOINT_MODES
from ..models.wan import check_model_source
from ..recipes import DEFAULT_RECIPE, RECIPES, get_recipe
from ..schedules import training_sigmas
from ..validation import check_multiple, check_number, check_train_settings
from .common import (
    LoopSettings,
    PhaseTimes,
    add_lora_adapter,
    autocast_enabled,
    compile_blocks,
    encode_captions,
    export_lora,
    make_validator,
    open_run,
    sample_sigma,
    train_loop,
)
from .distributed import DataParallel

FINAL_NAME = "motion_lora.safetensors"
ADAPTER = "motion"
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
    steps: int = _R.steps
    rank: int = _R.rank
    alpha: float = _R.alpha
    lr: float = _R.lr
    frames: int = setting(_R.frames, "frames per clip (4k+1)")
    height: int = setting(_R.height, "clip height (multiple of 16)")
    width: int = setting(_R.width, "clip width (multiple of 16)")
    fps: float = setting(_R.fps, "clips are resampled to this rate")
    loop: bool = setting(False, "repeat clips shorter than --frames instead of stopping with an error")
    flow_model: str = setting(_R.flow_model, "SEA-RAFT checkpoint: hub id, folder, .safetensors or official .pth")
    flow_iters: int | None = setting(None, "SEA-RAFT refinement iterations (none: the checkpoint's own, spring-M: 4)")
    use_mora: bool = setting(True, "MoRA on (--no-mora: the paper's 'w/o MoRA' ablation and plain motion LoRA)",
                             flag="mora")
    mora_weight: float = setting(_R.mora_weight, "alpha of L_MoRA")
    window: int = setting(_R.window, "latent frames decoded per MoRA window")
    window_stride: int = setting(_R.window_stride, "latents between successive window starts")
    drop_frames: int = setting(_R.drop_frames, "decoded warm-up frames dropped from each window")
    layer_types: tuple[str, ...] = _R.layer_types
    shift: float = _R.shift
    seed: int = 0
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
    batch_size: int = 1  # samples per process per optimizer step (computed one after the other)
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

    def validate(self) -> MotionTrainConfig:
        get_recipe(self.recipe)
        if self.flow_chunk == 0:  # what --flow-chunk 0 meant before `none`: all pairs at once
            self.flow_chunk = None
        check_train_settings(self)
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
        if self.use_mora and self.flow_model and not os.path.exists(self.flow_model):
            check_model_source(self.flow_model, "--flow-model", folder_check=None)
        if self.validate_every and not self.validation_prompt:
            raise SmraboothError("--validate-every needs --validation-prompt")
        if self.vae_checkpointing is True or self.vae_checkpointing is False:  # configs written before "block"
            self.vae_checkpointing = "frame" if self.vae_checkpointing else "none"
        if self.vae_checkpointing not in CHECKPOINT_MODES:
            raise SmraboothError(f"--vae-checkpointing {self.vae_checkpointing!r}: "
                                 f"choose {', '.join(CHECKPOINT_MODES)}")
        if self.use_mora:  # clear errors for windows that do not fit the clip
            valid_window_starts(1 + (self.frames - 1) // 4, self.window, self.window_stride)
            window_source_frames(0, self.window, self.drop_frames)
        self.layer_types = parse_layer_types(self.layer_types)
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
        key = cache_key(kind="motion-clip", model=vae, video=file_digest(item.video_path), frames=cfg.frames,
                        fps=cfg.fps, size=(cfg.height, cfg.width), loop=cfg.loop, vae_dtype=str(pipe.vae.dtype),
                        flow=flow, flow_iters=cfg.flow_iters)

        def compute(item=item):
            frames = load_motion_frames(item.video_path, cfg.frames, cfg.fps, cfg.height, cfg.width, cfg.loop)
            out = {"latent": encode_video_latent(pipe.vae, frames)}
            if cfg.use_mora:
                out["flows"] = reference_flows(frames.to(pipe._execution_device), flow_fn).float()
            return out

        t = cached(cache_dir, key, compute)
        examples.append(MotionExample(t["latent"], t.get("flows"), item.text))
    return examples


def motion_losses(cfg: MotionTrainConfig, transformer, vae, flow_fn, ex: MotionExample, text_embeds: torch.Tensor,
                  sigma: torch.Tensor, noise: torch.Tensor, start: int | None) -> dict[str, torch.Tensor]:
    """{'flow', 'mora' (when on), 'loss'} for one clip at one sigma; MoRA on the window at latent `start`."""
    z0 = ex.latent[None]
    z_t = (1 - sigma) * z0 + sigma * noise
    target = noise - z0
    u = transformer(z_t.to(transformer.dtype), (sigma * 1000).to(transformer.dtype), text_embeds,
                    return_dict=False)[0].float()
    losses = {"flow": ((u - target) ** 2).mean()}
    if not cfg.use_mora:
        losses["loss"] = losses["flow"]
        return losses
    z0_hat = one_step_z0(z_t, u, sigma)
    frames = decode_window(vae, z0_hat, start, cfg.window, cfg.drop_frames, checkpoint=cfg.vae_checkpointing,
                           store_last=cfg.vae_store_frames)
    ref = window_ref_flows(ex.flows, start, cfg.window, cfg.drop_frames)
    losses["mora"] = mora_loss(frames, ref, flow_fn, chunk=cfg.flow_chunk)
    losses["loss"] = losses["flow"] + cfg.mora_weight * losses["mora"]
    return losses


def train_motion(cfg: MotionTrainConfig, pipe, flow_model=None, model_id: str | None = None,
                 flow_id: str | None = None, resume: bool = False, overwrite: bool = False,
                 progress: bool = True) -> Path:
    """Train a motion LoRA into `cfg.out`; returns the path of the final LoRA file.

    `flow_model` is a frozen SEA-RAFT (models.searaft) when MoRA is on. `pipe` is changed: its text
    encoder is dropped after the captions are encoded and its transformer keeps the adapter "motion".
    """
    from ..data.folders import read_motion_folder
    from ..models.searaft import compute_flow

    times = PhaseTimes()
    cfg = cfg.validate()
    parallel = DataParallel.from_launcher(cfg.batch_size, cfg.gradient_accumulation)
    cfg, run_dir = open_run(cfg, FINAL_NAME, resume=resume, overwrite=overwrite, parallel=parallel)
    parallel.batch_size, parallel.accumulation = cfg.batch_size, cfg.gradient_accumulation  # a resumed run's own
    if cfg.use_mora and flow_model is None:
        raise SmraboothError("MoRA needs a SEA-RAFT flow model (or pass --no-mora)")

    model_id = model_id or cfg.model
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    items = read_motion_folder(cfg.data)
    transformer, vae = pipe.transformer, pipe.vae
    device = pipe._execution_device
    texts = [it.text for it in items] + ([cfg.validation_prompt, ""] if cfg.validate_every else [])
    embeds = encode_captions(pipe, texts, model_id, cache_dir)
    times.mark("captions")

    def flow_fn(image1, image2):
        return compute_flow(flow_model, image1, image2, iters=cfg.flow_iters)

    examples = precompute_examples(cfg, pipe, flow_fn, items, model_id, cache_dir, flow_id or cfg.flow_model,
                                   progress=progress)
    times.mark("precompute")
    pipe.text_encoder = None  # umT5-XXL: 11 GB in bf16, not needed any more
    if device.type == "cuda":
        torch.cuda.empty_cache()
    vae.requires_grad_(False)
    if flow_model is not None:
        flow_model.requires_grad_(False).eval()

    params = add_lora_adapter(transformer, ADAPTER, cfg.rank, cfg.alpha, cfg.layer_types, seed=cfg.seed)
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    if cfg.compile:
        compile_blocks(transformer)
    transformer.train()

    use_autocast = autocast_enabled(cfg.mixed_precision, device)
    sigmas = training_sigmas(cfg.shift)
    latent_frames = examples[0].latent.shape[1]
    starts = valid_window_starts(latent_frames, cfg.window, cfg.window_stride) if cfg.use_mora else []
    text_on_device = {t: e.to(device, transformer.dtype) for t, e in embeds.items()}
    on_device = [MotionExample(e.latent.to(device), None if e.flows is None else e.flows.to(device), e.text)
                 for e in examples]

    def compute_losses(step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        ex = on_device[int(torch.randint(len(on_device), (1,), generator=gen))]
        sigma = sample_sigma(sigmas, gen).to(device)
        noise = torch.randn(ex.latent.shape, generator=gen).to(device)
        start = starts[step % len(starts)] if cfg.use_mora else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
            return motion_losses(cfg, transformer, vae, flow_fn, ex, text_on_device[ex.text], sigma, noise, start)

    validate = None
    if cfg.validate_every:
        validate = make_validator(pipe, run_dir, embeds[cfg.validation_prompt], embeds[""], frames=cfg.frames,
                                  height=cfg.height, width=cfg.width, steps=cfg.validation_steps, seed=cfg.seed,
                                  shift=cfg.shift, fps=round(cfg.fps))

    generator = torch.Generator().manual_seed(cfg.seed)
    settings = LoopSettings(steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            max_grad_norm=cfg.max_grad_norm, checkpoint_every=cfg.checkpoint_every,
                            validate_every=cfg.validate_every, progress=progress)
    times.mark("setup")
    train_loop(run_dir, settings, transformer, ADAPTER, params, {}, compute_losses, generator, resume=resume,
               validate=validate, parallel=parallel)
    times.mark("loop")
    from ..models.wan import parse_dtype

    final = run_dir / FINAL_NAME
    if not parallel.is_main:  # the main process writes the LoRA; the others wait for it
        parallel.barrier()
        return final
    export_lora(transformer, ADAPTER, final, cfg.rank, cfg.alpha, "motion",
                        dtype=parse_dtype(cfg.save_dtype),
                        extra_info={"steps": cfg.steps, "mora": cfg.use_mora,
                                    "token": folder_token([it.text for it in items], MOTION_TOKENS)})
    times.mark("save")
    times.write(run_dir)
    parallel.barrier()
    return final
