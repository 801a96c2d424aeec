"""SMRABooth's U-Net variant on ZeroScope (supplementary 5): the subject and motion LoRA trainers.

Epsilon prediction on a DDPM schedule (alphabar_t from the model's scheduler, t uniform over its
training timesteps):  z_t = sqrt(abar) z0 + sqrt(1 - abar) eps,  the U-Net predicts eps.

Subject (spatial transformers' LoRA; images are one-frame videos):
    L = L_region + lambda L_SuRA
    L_region = sum(M (eps - eps_theta)^2) / sum(M)        mask resized to the latent grid
    L_SuRA   = RAA on the output of `raa_block` (align/raa.py); --no-raa: per-position SuRA
Motion (temporal transformers' LoRA):
    L = mean (eps - eps_theta)^2 + alpha L_MoRA
    z0_hat = (z_t - sqrt(1 - abar) eps_theta) / sqrt(abar)          `epsilon_z0`
    L_MoRA = | SEA-RAFT(decode(z0_hat[window])) - SEA-RAFT(reference[window]) |_1

Choices (the supplementary gives none of these):
- Images as ONE-frame videos, not repeated frames: the subject LoRA is in the spatial layers, which
  see each frame on its own, so repeated identical frames would only multiply the cost (24x at
  ZeroScope's length) for the same spatial gradient; the DiT path and MotionDirector's spatial path
  train on single frames too.
- RAA on the U-Net's mid block (`raa_block="mid"`): the bottleneck holds the most semantic features,
  and U-REPA (REPA for U-Nets) found the middle stage the best place to align a U-Net with DINOv2; its
  grid is small (8x8 for a 512 image), so the attention over 1024 DINOv2 tokens costs nothing.
- lambda = 0.1: it gives SuRA the same share of the subject LoRA's gradient as the DiT recipe's 0.05
  does, measured on the tiny models (benchmarks/unet_sura_weight.py; docs/unet.md has the numbers).
  Every U-Net default lives in recipes.UNET.
- MoRA window: ZeroScope's VAE decodes each frame alone (no temporal compression, no causal warm-up),
  so a window is `window` consecutive frames with nothing dropped. Default 16 frames (15 flow pairs,
  the same flow count per step as the DiT's MoRA), start cycling 0, 4, 8 (stride 4) so three
  successive steps cover a 24-frame clip. Each frame's decode is checkpointed (recomputed in backward).

Run folders, logs, checkpoints, exact resume, data-parallel launches, the pipeline handed back as it was found and
caching are the Wan trainers' (train/session.py, train/common.py), and so are the settings checks
(validation.check_train_settings).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint

from ..align.mora import mora_loss, reference_flows
from ..align.raa import RAABlock, direct_sura_loss, raa_sura_loss
from ..backbones.zeroscope import ZEROSCOPE
from ..config import setting
from ..data.cache import cache_key, cached, default_cache_dir, file_digest, model_digest
from ..errors import SmraboothError
from ..lora.targets import ALL_LAYER_TYPES, parse_layer_types
from ..lora.unet import add_unet_adapter, save_unet_lora, unet_lora_from_peft
from ..models.searaft import check_flow_model
from ..recipes import PAPER, UNET
from ..run_folder import abandons_staging
from ..validation import check_choice, check_multiple, check_number, check_train_settings
from .common import LoopSettings, autocast_enabled, check_inputs, data_files, seeded, train_loop
from .session import training_session
from .subject import masked_flow_loss

SUBJECT_FINAL = "subject_lora.safetensors"
MOTION_FINAL = "motion_lora.safetensors"
RAA_BLOCKS = ("down.0", "down.1", "down.2", "down.3", "mid", "up.0", "up.1", "up.2", "up.3")


@dataclass
class UnetSubjectConfig:
    """Every setting of a U-Net subject run (config.yaml)."""

    model: str = setting("", cli=False)  # --model comes with the other model flags
    data: str = ""
    out: str = ""
    name: str | None = None
    steps: int = PAPER.subject.steps
    rank: int = PAPER.subject.rank
    alpha: float = PAPER.subject.alpha
    lr: float = PAPER.subject.lr
    resolution: int = PAPER.subject.resolution
    encoder: str = PAPER.subject.encoder
    encoder_grid: int = setting(UNET.encoder_grid, "U-Net only: DINOv2 patches per side for RAA (x14 pixels)")
    use_sura: bool = True
    use_raa: bool = setting(True, "U-Net only: SuRA through the RAA block (--no-raa: the paper's 'w/o RAA', "
                            "per-position alignment on a resized token grid)", flag="raa")
    use_mask: bool = True
    sura_weight: float = UNET.sura_weight
    raa_block: str = setting(UNET.raa_block, "U-Net only: block whose output RAA aligns", choices=RAA_BLOCKS)
    projector_width: int = PAPER.subject.projector_width
    layer_types: tuple[str, ...] = ALL_LAYER_TYPES
    seed: int = 0
    gradient_checkpointing: bool = True
    mixed_precision: str = "auto"
    weight_decay: float = PAPER.subject.weight_decay
    max_grad_norm: float = PAPER.subject.max_grad_norm
    checkpoint_every: int = 100
    batch_size: int = PAPER.subject.batch_size  # samples per process per optimizer step (train/distributed.py)
    gradient_accumulation: int = 1
    save_dtype: str = "bf16"
    vae_dtype: str = setting("fp32", cli=False)  # --vae-dtype comes with the model flags (the VAE while training)
    cache_dir: str | None = None

    @classmethod
    def from_recipe(cls, recipe: str = "paper", **settings) -> UnetSubjectConfig:
        """The U-Net's defaults (recipes.UNET; one recipe only), `settings` on top: what `--config` builds on."""
        return cls(**settings)

    def validate(self) -> UnetSubjectConfig:
        check_train_settings(self)
        check_multiple("--resolution", self.resolution, 8, 8, 2048)
        check_number("--encoder-grid", self.encoder_grid, 1, 256, integer=True)
        check_number("--sura-weight", self.sura_weight, 0, 1000)
        check_number("--projector-width", self.projector_width, 1, 65536, integer=True)
        check_choice("--raa-block", self.raa_block, RAA_BLOCKS)
        self.layer_types = parse_layer_types(self.layer_types)
        return self


@dataclass
class UnetMotionConfig:
    """Every setting of a U-Net motion run (config.yaml)."""

    model: str = setting("", cli=False)  # --model comes with the other model flags
    data: str = ""
    out: str = ""
    steps: int = PAPER.motion.steps
    rank: int = PAPER.motion.rank
    alpha: float = PAPER.motion.alpha
    lr: float = PAPER.motion.lr
    frames: int = UNET.frames
    height: int = UNET.height
    width: int = UNET.width
    fps: float = UNET.fps
    loop: bool = False
    flow_model: str = PAPER.motion.flow_model
    flow_iters: int | None = None
    use_mora: bool = True
    mora_weight: float = PAPER.motion.mora_weight
    window: int = UNET.window
    window_stride: int = UNET.window_stride
    vae_checkpointing: str = "frame"  # none | frame: recompute each frame's decode in backward
    flow_chunk: int | None = None
    layer_types: tuple[str, ...] = ALL_LAYER_TYPES
    seed: int = 0
    gradient_checkpointing: bool = True
    mixed_precision: str = "auto"
    weight_decay: float = PAPER.motion.weight_decay
    max_grad_norm: float = PAPER.motion.max_grad_norm
    checkpoint_every: int = 100
    batch_size: int = PAPER.motion.batch_size  # clips per process per optimizer step (train/distributed.py)
    gradient_accumulation: int = 1
    save_dtype: str = "bf16"
    vae_dtype: str = setting("fp32", cli=False)  # --vae-dtype comes with the model flags (the VAE while training)
    cache_dir: str | None = None

    @classmethod
    def from_recipe(cls, recipe: str = "paper", **settings) -> UnetMotionConfig:
        return cls(**settings)

    def validate(self) -> UnetMotionConfig:
        check_train_settings(self)
        check_number("--frames", self.frames, 2, 1000, integer=True)
        check_multiple("--height", self.height, 8, 8, 2048)
        check_multiple("--width", self.width, 8, 8, 2048)
        check_number("--fps", self.fps, 0, 240, low_open=True)
        check_number("--flow-iters", self.flow_iters, 1, 100, integer=True, optional=True)
        check_number("--mora-weight", self.mora_weight, 0, 1000)
        check_number("--flow-chunk", self.flow_chunk, 1, 10000, integer=True, optional=True)
        if self.vae_checkpointing not in ("none", "frame"):
            raise SmraboothError(f"--vae-checkpointing {self.vae_checkpointing!r}: the U-Net's per-frame VAE "
                                 f"takes none or frame")
        if self.use_mora:
            window_starts(self.frames, self.window, self.window_stride)
            check_flow_model(self.flow_model)
        self.layer_types = parse_layer_types(self.layer_types)
        return self


# ---------------------------------------------------------------- epsilon parameterisation
def _per_item(abar, like: torch.Tensor) -> torch.Tensor:
    abar = torch.as_tensor(abar, dtype=torch.float32, device=like.device)
    return abar.reshape(-1, *([1] * (like.ndim - 1))) if abar.ndim else abar


def add_noise(z0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """z_t = sqrt(abar) z0 + sqrt(1 - abar) eps (DDPM's forward process); abar a scalar or one per item."""
    abar = _per_item(abar, z0)
    return abar.sqrt() * z0 + (1 - abar).sqrt() * noise


def epsilon_z0(z_t: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """One-step clean estimate of an epsilon model: z0_hat = (z_t - sqrt(1 - abar) eps) / sqrt(abar)."""
    abar = _per_item(abar, z_t)
    return (z_t - (1 - abar).sqrt() * eps) / abar.sqrt()


def window_starts(frames: int, window: int, stride: int) -> list[int]:
    """MoRA window starts 0, stride, 2 stride, ... with start + window <= frames (frames decode alone)."""
    if window < 2 or stride < 1:
        raise SmraboothError(f"--window {window} must be >= 2 frames (one flow) and --window-stride {stride} >= 1")
    if window > frames:
        raise SmraboothError(f"--window {window} is longer than the clip's {frames} --frames: use a smaller window")
    return list(range(0, frames - window + 1, stride))


def decode_frames(vae, latents: torch.Tensor, checkpointed: bool = True) -> torch.Tensor:
    """Scaled SD latents (B, 4, F, h, w) -> frames (B, F, 3, H, W) in [0, 1], differentiable, each frame
    decoded on its own (as TextToVideoSDPipeline.decode_latents) and, with `checkpointed`, recomputed in
    backward instead of stored."""
    b, c, f, h, w = latents.shape
    flat = (latents / vae.config.scaling_factor).permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w).to(vae.dtype)

    def one(z):
        return vae.decode(z).sample

    frames = [checkpoint(one, flat[i : i + 1], use_reentrant=False) if checkpointed and torch.is_grad_enabled()
              else one(flat[i : i + 1]) for i in range(b * f)]
    video = torch.cat(frames).float().reshape(b, f, 3, *frames[0].shape[-2:])
    return (video / 2 + 0.5).clamp(0, 1)


# ---------------------------------------------------------------- U-Net helpers
def block_of(unet, name: str):
    """'mid', 'down.2', 'up.1' -> the module; its output channels."""
    chans = list(unet.config.block_out_channels)
    if name == "mid":
        return unet.mid_block, chans[-1]
    part, _, index = name.partition(".")
    blocks = unet.down_blocks if part == "down" else unet.up_blocks
    if not (index.isascii() and index.isdigit()) or int(index) >= len(blocks):
        raise SmraboothError(f"--raa-block {name}: this U-Net has {len(blocks)} {part} blocks")
    i = int(index)
    return blocks[i], (chans[i] if part == "down" else chans[::-1][i])


def enable_block_checkpointing(unet) -> None:
    """Gradient checkpointing per down/mid/up block (UNet3DConditionModel has none of its own): each
    block's activations are recomputed in backward. Forward hooks on a block still see its output."""
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        if getattr(block, "_smrabooth_checkpointed", False):
            continue
        block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
        block._smrabooth_checkpointed = True


def disable_block_checkpointing(unet) -> None:
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        if getattr(block, "_smrabooth_checkpointed", False):
            del block.forward, block._smrabooth_checkpointed


def _abar(unet_scheduler, device) -> torch.Tensor:
    return unet_scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)


def _prepare(cfg, model_id):
    model_id = model_id or cfg.model
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    return model_id, cache_dir


def _write_lora(pipe, run_dir, cfg, adapter, final, kind, extra):
    from ..models.wan import parse_dtype

    lora = unet_lora_from_peft(pipe.unet, adapter, kind, extra_info={"steps": cfg.steps, **extra})
    return save_unet_lora(run_dir / final, lora, dtype=parse_dtype(cfg.save_dtype))


def _needs(model, what: str):
    def check(cfg):
        if getattr(cfg, "use_sura", getattr(cfg, "use_mora", False)) and model is None:
            raise SmraboothError(what)

    return check


# ---------------------------------------------------------------- subject
@abandons_staging
def train_unet_subject(cfg: UnetSubjectConfig, pipe, encoder=None, model_id: str | None = None, resume: bool = False,
                       overwrite: bool = False, progress: bool = True, explicit: set[str] | None = None) -> Path:
    """Train a subject LoRA into `cfg.out` on a ZeroScope pipeline; returns the final LoRA path.
    `explicit`: the settings the user gave, compared with a resumed run's (train_subject's).
    `encoder`: DINOv2, or a function loading it (called only on a cache miss). `pipe` and an `encoder` model are
    returned as they were given, also on an error (train.borrow): while training the text encoder waits on the CPU
    and the U-Net carries the adapter "subject"."""
    with training_session(cfg, pipe, SUBJECT_FINAL, resume, overwrite, explicit,
                          models=[encoder] if isinstance(encoder, torch.nn.Module) else [],
                          check=_needs(encoder, "SuRA needs a DINOv2 encoder (or pass --no-sura)")) as run:
        return _train_unet_subject(run, pipe, encoder, model_id, progress)


def _train_unet_subject(run, pipe, encoder, model_id, progress) -> Path:
    from tqdm.auto import tqdm

    from ..data.subject import load_image_and_mask, mask_to_latent_grid
    from ..models.dinov2 import dinov2_patch_features
    from .subject import read_subject_items

    cfg, run_dir, times = run.cfg, run.run_dir, run.times
    backbone = ZEROSCOPE
    model_id, cache_dir = _prepare(cfg, model_id)
    unet, vae, device = pipe.unet, pipe.vae, pipe._execution_device
    items = read_subject_items(cfg)
    check_inputs(run_dir, data_files(cfg.data, items), run.resume, run.parallel)
    embeds = backbone.encode_captions(pipe, [t for _, _, t in items], model_id, cache_dir)
    times.mark("captions")

    res, sf = cfg.resolution, pipe.vae_scale_factor
    latent_hw = (res // sf, res // sf)
    grid = (cfg.encoder_grid, cfg.encoder_grid)
    vae_digest = model_digest(model_id, ("vae",), cache_dir)
    enc_digest = model_digest(cfg.encoder, (), cache_dir) if cfg.use_sura else None
    loaded = {}
    examples = []
    for image_path, mask_path, text in tqdm(items, desc="caching latents and features", leave=False,
                                            disable=not progress):
        key = cache_key(kind="unet-subject-image", model=vae_digest, res=res, image=file_digest(image_path),
                        mask=file_digest(mask_path) if mask_path else None, encoder=enc_digest, grid=grid,
                        vae_dtype=str(vae.dtype))

        def compute(image_path=image_path, mask_path=mask_path):
            image, mask = load_image_and_mask(image_path, mask_path, res)
            out = {"latent": backbone.encode_image(pipe, image),  # (4, 1, h, w): a one-frame video
                   "mask": mask_to_latent_grid(mask, latent_hw) if mask is not None else torch.ones(1, 1, *latent_hw)}
            if cfg.use_sura:
                if "encoder" not in loaded:
                    loaded["encoder"] = encoder if isinstance(encoder, torch.nn.Module) else encoder()
                enc = loaded["encoder"]
                out["tokens"] = dinov2_patch_features(enc, image[None].to(enc.device), grid)[0].cpu()
            return out

        examples.append({**cached(cache_dir, key, compute), "text": text})
    loaded.clear()
    times.mark("precompute")
    pipe.text_encoder.to("cpu")
    if isinstance(encoder, torch.nn.Module):
        encoder.to("cpu")  # the caller's model: back on its device at the end
    vae.to("cpu")  # the subject loss never decodes
    if device.type == "cuda":
        torch.cuda.empty_cache()

    params = add_unet_adapter(unet, "subject", cfg.rank, cfg.alpha, "spatial", cfg.layer_types, seed=cfg.seed)
    modules, hidden = {}, {}
    if cfg.use_sura:
        block, unet_dim = backbone.sura_module(unet, cfg.raa_block)
        with seeded(cfg.seed + 1):
            modules["raa"] = RAABlock(unet_dim, examples[0]["tokens"].shape[-1], cfg.projector_width).to(device)
        params += list(modules["raa"].parameters())
        hook = block.register_forward_hook(
            lambda m, i, o: hidden.__setitem__("h", o[0] if isinstance(o, tuple) else o))
    if cfg.gradient_checkpointing:
        enable_block_checkpointing(unet)
    unet.train()
    use_autocast = autocast_enabled(cfg.mixed_precision, device)
    abar_all = _abar(pipe.scheduler, device)
    num_t = len(abar_all)
    text_on_device = {t: e.to(device, unet.dtype) for t, e in embeds.items()}
    on_device = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in ex.items()} for ex in examples]
    sura_fn = raa_sura_loss if cfg.use_raa else direct_sura_loss

    def compute_losses(step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        ex = on_device[int(torch.randint(len(on_device), (1,), generator=gen))]
        t = torch.randint(num_t, (1,), generator=gen)
        noise = torch.randn(ex["latent"].shape, generator=gen).to(device)[None]
        z0 = ex["latent"][None]
        abar = abar_all[t.to(device)]
        z_t = add_noise(z0, noise, abar)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
            eps = unet(z_t.to(unet.dtype), t.to(device), encoder_hidden_states=text_on_device[ex["text"]],
                       return_dict=False)[0]
            losses = {"region": masked_flow_loss(eps, noise, ex["mask"][None])}
            if cfg.use_sura:
                losses["sura"] = sura_fn(modules["raa"], hidden.pop("h"), ex["tokens"][None])
        losses["loss"] = losses["region"] + cfg.sura_weight * losses["sura"] if cfg.use_sura else losses["region"]
        return losses

    generator = torch.Generator().manual_seed(cfg.seed)
    settings = LoopSettings(steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            max_grad_norm=cfg.max_grad_norm, checkpoint_every=cfg.checkpoint_every,
                            progress=progress)
    times.mark("setup")
    try:
        train_loop(run_dir, settings, unet, "subject", params, modules, compute_losses, generator, resume=run.resume,
                   parallel=run.parallel)
        times.mark("loop")
    finally:
        if cfg.use_sura:
            hook.remove()
            hidden.clear()
        disable_block_checkpointing(unet)

    def write():
        if "raa" in modules:
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in modules["raa"].state_dict().items()},
                      str(run_dir / "raa.safetensors"))
        extra = {"sura": cfg.use_sura, "raa": cfg.use_sura and cfg.use_raa}
        _write_lora(pipe, run_dir, cfg, "subject", SUBJECT_FINAL, "subject", extra)

    return run.finish(SUBJECT_FINAL, write)


# ---------------------------------------------------------------- motion
def unet_motion_losses(cfg: UnetMotionConfig, unet, vae, flow_fn, ex: dict, text_embeds: torch.Tensor,
                       t: torch.Tensor, abar: torch.Tensor, noise: torch.Tensor, start: int | None):
    """{'temporal', 'mora' (when on), 'loss'} for one clip at timestep t; MoRA on frames start..start+window."""
    z0 = ex["latent"][None]
    z_t = add_noise(z0, noise, abar)
    eps = unet(z_t.to(unet.dtype), t, encoder_hidden_states=text_embeds, return_dict=False)[0].float()
    losses = {"temporal": ((eps - noise) ** 2).mean()}
    if not cfg.use_mora:
        losses["loss"] = losses["temporal"]
        return losses
    z0_hat = epsilon_z0(z_t, eps, abar)
    frames = ZEROSCOPE.decode_window(vae, z0_hat, start, cfg.window, checkpoint=cfg.vae_checkpointing)
    ref = ex["flows"][start : start + cfg.window - 1]
    losses["mora"] = mora_loss(frames, ref, flow_fn, chunk=cfg.flow_chunk)
    losses["loss"] = losses["temporal"] + cfg.mora_weight * losses["mora"]
    return losses


@abandons_staging
def train_unet_motion(cfg: UnetMotionConfig, pipe, flow_model=None, model_id: str | None = None,
                      flow_id: str | None = None, resume: bool = False, overwrite: bool = False,
                      progress: bool = True, explicit: set[str] | None = None) -> Path:
    """Train a motion LoRA (temporal layers) into `cfg.out` on a ZeroScope pipeline; returns its path.
    `explicit`: the settings the user gave, compared with a resumed run's (train_motion's). `pipe` and `flow_model`
    are returned as they were given (train.borrow)."""
    with training_session(cfg, pipe, MOTION_FINAL, resume, overwrite, explicit, models=[flow_model],
                          check=_needs(flow_model, "MoRA needs a SEA-RAFT flow model (or pass --no-mora)")) as run:
        return _train_unet_motion(run, pipe, flow_model, model_id, flow_id, progress)


def _train_unet_motion(run, pipe, flow_model, model_id, flow_id, progress) -> Path:
    from tqdm.auto import tqdm

    from ..data.folders import read_motion_folder
    from ..data.motion import load_motion_frames
    from ..models.searaft import compute_flow

    cfg, run_dir, times = run.cfg, run.run_dir, run.times
    backbone = ZEROSCOPE
    model_id, cache_dir = _prepare(cfg, model_id)
    unet, vae, device = pipe.unet, pipe.vae, pipe._execution_device
    items = read_motion_folder(cfg.data)
    check_inputs(run_dir, data_files(cfg.data, items), run.resume, run.parallel)
    embeds = backbone.encode_captions(pipe, [it.text for it in items], model_id, cache_dir)
    times.mark("captions")

    def flow_fn(image1, image2):
        return compute_flow(flow_model, image1, image2, iters=cfg.flow_iters)

    vae_digest = model_digest(model_id, ("vae",), cache_dir)
    flow_digest = model_digest(flow_id or cfg.flow_model, (), cache_dir) if cfg.use_mora else None
    examples = []
    for item in tqdm(items, desc="caching latents and flows", leave=False, disable=not progress):
        key = cache_key(kind="unet-motion-clip", model=vae_digest, video=file_digest(item.video_path),
                        frames=cfg.frames, fps=cfg.fps, size=(cfg.height, cfg.width), loop=cfg.loop,
                        vae_dtype=str(vae.dtype), flow=flow_digest, flow_iters=cfg.flow_iters)

        def compute(item=item):
            frames = load_motion_frames(item.video_path, cfg.frames, cfg.fps, cfg.height, cfg.width, cfg.loop,
                                        wan_frames=False)
            out = {"latent": backbone.encode_video(pipe, frames)}  # (4, F, h, w)
            if cfg.use_mora:
                out["flows"] = reference_flows(frames.to(device), flow_fn).float().cpu()
            return out

        examples.append({**cached(cache_dir, key, compute), "text": item.text})
    times.mark("precompute")
    pipe.text_encoder.to("cpu")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    vae.requires_grad_(False)
    if flow_model is not None:
        flow_model.requires_grad_(False).eval()

    params = add_unet_adapter(unet, "motion", cfg.rank, cfg.alpha, "temporal", cfg.layer_types, seed=cfg.seed)
    if cfg.gradient_checkpointing:
        enable_block_checkpointing(unet)
    unet.train()
    use_autocast = autocast_enabled(cfg.mixed_precision, device)
    abar_all = _abar(pipe.scheduler, device)
    starts = window_starts(cfg.frames, cfg.window, cfg.window_stride) if cfg.use_mora else []
    text_on_device = {t: e.to(device, unet.dtype) for t, e in embeds.items()}
    on_device = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in ex.items()} for ex in examples]

    def compute_losses(step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        ex = on_device[int(torch.randint(len(on_device), (1,), generator=gen))]
        t = torch.randint(len(abar_all), (1,), generator=gen).to(device)
        noise = torch.randn(ex["latent"].shape, generator=gen).to(device)[None]
        start = starts[step % len(starts)] if cfg.use_mora else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
            return unet_motion_losses(cfg, unet, vae, flow_fn, ex, text_on_device[ex["text"]], t, abar_all[t],
                                      noise, start)

    generator = torch.Generator().manual_seed(cfg.seed)
    settings = LoopSettings(steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            max_grad_norm=cfg.max_grad_norm, checkpoint_every=cfg.checkpoint_every,
                            progress=progress)
    times.mark("setup")
    try:
        train_loop(run_dir, settings, unet, "motion", params, {}, compute_losses, generator, resume=run.resume,
                   parallel=run.parallel)
        times.mark("loop")
    finally:
        disable_block_checkpointing(unet)
    return run.finish(MOTION_FINAL,
                      lambda: _write_lora(pipe, run_dir, cfg, "motion", MOTION_FINAL, "motion", {"mora": cfg.use_mora}))
