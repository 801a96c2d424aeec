"""What every pretraining stage shares: its settings, its folder, the on-the-fly clip stream, the
checkpoint with exact resume, and the time-limited optimisation loop.

A stage folder `DIR/<stage>/` holds
    config.json     every setting, resolved (a resumed call keeps them; only steps, minutes, device,
                    workers and progress may change)
    log.jsonl       one line per step: step, each loss term, lr, seconds (training time of all calls)
    state.pt        model(s), optimizer, step, seconds, and the RNG states (smrabooth.train.state.rng_state:
                    the training generator, torch, CUDA, numpy); written to a temporary file and renamed,
                    so it is complete or absent
    summary.json    step, final losses (mean of the last 20 logged steps), minutes, batch, lr, date:
                    what `assemble` writes into sprites.json
Data never touches the disk: example i of the stream is `sample_clip(seed=base + i)` (or, with
`clips=N`, clip i mod N), rendered in DataLoader workers. Step s uses examples s*batch .. (s+1)*batch-1,
so a resumed call reads exactly the examples the uninterrupted run would have read.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from smrabooth.errors import SmraboothError
from smrabooth.train.state import JsonlLog, atomic_path, read_log, rng_state, set_rng_state

STAGES = ("vae", "dit", "dinov2", "searaft")
STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
SUMMARY_FILE = "summary.json"
# Each stage reads its own part of the clip stream (stage index * 10^8 + i), so the VAE, the DiT and
# the encoders never see the same clip by construction of the seeds; latent statistics use another part.
STREAM_BASE = {"vae": 100_000_000, "dit": 200_000_000, "dinov2": 300_000_000, "searaft": 400_000_000}
STILLS_BASE = 250_000_000  # dit: seeds of the stills (--image-fraction)
STATS_BASE = 900_000_000
# Defaults per stage (chosen from the throughput measurements in docs/sprites-models.md).
STAGE_DEFAULTS = {
    "vae": {"batch": 8, "lr": 3e-4, "warmup": 100, "per_clip": 1},
    "dit": {"batch": 32, "lr": 3e-4, "warmup": 200, "per_clip": 1, "ema": 0.999},
    "dinov2": {"batch": 32, "lr": 3e-4, "warmup": 100, "per_clip": 4},  # 4 frames of each clip
    "searaft": {"batch": 8, "lr": 4e-4, "warmup": 100, "per_clip": 2},  # 2 frame pairs of each clip
}
CHECKPOINT_SECONDS = 180  # state.pt is also written every 3 minutes within a call
# Settings a resumed call may change; everything else comes from the saved config.json.
RESUMABLE = ("steps", "minutes", "device", "workers", "progress")


@dataclass
class StageConfig:
    stage: str = "vae"
    out: str = ""
    preset: str = "small"
    steps: int = 1_000_000  # in practice --minutes ends a call first
    minutes: float = 9.0  # wall time of one call (setup + training); the final checkpoint comes after
    batch: int = 0  # clips per step; 0: the stage's default
    lr: float = 0.0  # 0: the stage's default
    warmup: int = -1  # linear warmup steps; -1: the stage's default
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0  # start weights (build_sprites_models) and the training generator
    clips: int = 0  # distinct clips; 0: a new clip for every example, N: cycle through the first N
    per_clip: int = 0  # dinov2: frames per clip, searaft: frame pairs per clip; 0: the stage's default
    device: str | None = None  # None: cuda if available
    workers: int | None = None  # None: min(8, cpu_count - 1)
    mixed_precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    progress: bool = True
    kl_weight: float = 1e-6  # vae
    stats_clips: int = 256  # vae: clips for the latent mean/std
    caption_dropout: float = 0.1  # dit: share of empty prompts (classifier-free guidance)
    sprite_weight: float = 0.0  # vae, dit: extra loss weight on the sprite's pixels / latent cells (0: none)
    gamma: float = 0.85  # searaft: weight of iteration i is gamma^(n-1-i)
    ema: float = -1.0  # dit: EMA decay of the weights (0: none; -1: the stage's default, dit 0.999)
    size: int = 0  # clip size in pixels; 0: the preset's (smaller only for tests and quick experiments)
    frames: int = 0  # frames per clip (4k+1); 0: the preset's
    pool: int = 0  # dit: render and encode this many clips once per call, then train from GPU-resident latents
    image_fraction: float = 0.0  # dit: share of steps that train on one-frame stills instead of clips
    stills: int = 0  # dit: distinct stills, encoded once per call (0: 10,000 when image_fraction > 0)
    sprite_scale: float = 1.0  # vae, dit: clips' sprite radius x this, cut to what the motion leaves (world.sample_motion)
    partial_captions: float = 0.0  # dit: each of colour, texture, motion left out of a caption with this probability
    init_from: str = ""  # vae, dit: start from this bundle's VAE / transformer (e.g. to continue a shipped one)
    # vae: train the decoder alone (post_quant_conv + decoder) on the posterior means of the frozen encoder: the
    # latent space, and so the DiT trained on it, stays valid (needs init_from; its latent statistics are kept)
    decoder_only: bool = False
    extra: dict = field(default_factory=dict)

    def resolved(self) -> StageConfig:
        if self.stage not in STAGES:
            raise SmraboothError(f"unknown stage {self.stage!r}: choose from {', '.join(STAGES)}")
        d = STAGE_DEFAULTS[self.stage]
        if not self.batch:
            self.batch = d["batch"]
        if not self.lr:
            self.lr = d["lr"]
        if self.warmup < 0:
            self.warmup = d["warmup"]
        if not self.per_clip:
            self.per_clip = d["per_clip"]
        if self.ema < 0:
            self.ema = d.get("ema", 0.0)
        if self.ema >= 1:
            raise SmraboothError(f"--ema {self.ema}: an EMA decay is below 1 (e.g. 0.999), or 0 for none")
        if self.steps < 1 or self.batch < 1 or self.minutes <= 0 or self.clips < 0:
            raise SmraboothError("--steps and --batch must be positive, --minutes > 0 and --clips >= 0")
        if not 0.0 <= self.image_fraction <= 1.0 or self.stills < 0:
            raise SmraboothError(f"--image-fraction {self.image_fraction}: a share in [0, 1]; --stills >= 0")
        if not self.sprite_scale > 0:
            raise SmraboothError(f"--sprite-scale {self.sprite_scale}: a positive factor (1: the world's sizes)")
        if not 0.0 <= self.partial_captions <= 1.0:
            raise SmraboothError(f"--partial-captions {self.partial_captions}: a probability in [0, 1]")
        if self.decoder_only and (self.stage != "vae" or not self.init_from):
            raise SmraboothError("--decoder-only is a vae option and needs --init-from BUNDLE (the encoder and latent "
                                 "statistics it keeps)")
        if self.image_fraction and not self.stills:
            self.stills = 10_000
        if self.mixed_precision not in ("auto", "bf16", "no"):
            raise SmraboothError(f"mixed_precision {self.mixed_precision!r}: choose auto, bf16 or no")
        from ..bundle import get_preset

        preset = get_preset(self.preset)
        self.size = self.size or preset.size
        self.frames = self.frames or preset.frames
        if self.size % 16 or (self.frames - 1) % 4:
            raise SmraboothError(f"clips of {self.frames} frames of {self.size}x{self.size}: the size must be a "
                                 f"multiple of 16 and the frame count 4k+1")
        if self.stage == "searaft" and self.per_clip > self.frames - 1:
            raise SmraboothError(f"per_clip {self.per_clip}: a {self.frames}-frame clip has only "
                                 f"{self.frames - 1} frame pairs")
        if self.stage == "dinov2" and self.per_clip > self.frames:
            raise SmraboothError(f"per_clip {self.per_clip}: a clip has only {self.frames} frames")
        return self

    @property
    def stage_dir(self) -> Path:
        return Path(self.out) / self.stage


def read_config(path: Path) -> StageConfig:
    data = json.loads(Path(path).read_text())
    known = {f.name for f in fields(StageConfig)}
    return StageConfig(**{k: v for k, v in data.items() if k in known})


def prepare_stage_dir(cfg: StageConfig, resume: bool, write: bool = True) -> StageConfig:
    """Create DIR/<stage>/ (or check it for --resume); returns the config this call runs with.
    `write=False` (the other processes of a multi-GPU run): only read what the main one prepared."""
    folder = cfg.stage_dir
    if not write:
        return resumed_config(cfg) if resume else cfg
    if resume:
        if not (folder / STATE_FILE).is_file():
            raise SmraboothError(f"nothing to resume in {folder}: it has no {STATE_FILE} (run without --resume "
                                 f"to start the {cfg.stage} stage)")
        cfg = resumed_config(cfg)
    else:
        # a folder holding only the config (a call that failed before its first checkpoint) may start over;
        # so may one holding kept pools of latents (dit.pool_file), which depend only on the settings
        started = folder.is_dir() and any(p.name not in (CONFIG_FILE, LOG_FILE) and not p.name.startswith("pool-")
                                          for p in folder.iterdir())
        if started:
            raise SmraboothError(f"{folder} already holds a {cfg.stage} stage: pass --resume to continue it "
                                 f"(with more --steps or another --minutes), or choose another --out")
        folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return cfg


def resumed_config(cfg: StageConfig) -> StageConfig:
    """The saved config.json, with the settings a resumed call may change (RESUMABLE) taken from `cfg`."""
    folder = cfg.stage_dir
    saved = read_config(folder / CONFIG_FILE)
    if saved.preset != cfg.preset:
        raise SmraboothError(f"{folder} was trained with preset {saved.preset!r}, not {cfg.preset!r}")
    for name in RESUMABLE:  # a resumed run keeps its settings; these may change between calls
        setattr(saved, name, getattr(cfg, name))
    return saved.resolved()


def latent_mask(masks: torch.Tensor, spatial: int = 8, temporal: int = 4) -> torch.Tensor:
    """Sprite masks (B, F, H, W) -> (B, 1, T, H/8, W/8): 1 where a latent cell sees any sprite pixel.

    Wan's causal VAE maps frame 0 to latent 0 and frames 4t-3..4t to latent t."""
    m = masks.float()
    b, f, h, w = m.shape
    rest = m[:, 1:].reshape(b, (f - 1) // temporal, temporal, h, w).amax(2)
    cells = torch.cat([m[:, :1], rest], 1)
    return torch.nn.functional.max_pool2d(cells, spatial)[:, None]


def pixel_region(masks: torch.Tensor, spatial: int = 8, temporal: int = 4) -> torch.Tensor:
    """Sprite masks (B, F, H, W) -> (B, 1, F, H, W): `latent_mask` back on the pixel grid, so each frame
    marks every 8x8 cell its latent frame's sprite touches, in any of the frames that latent covers.

    Weighting this region (and not the exact mask) penalises a smeared sprite as much as a missing one."""
    cells = latent_mask(masks, spatial, temporal)
    repeats = torch.tensor([1] + [temporal] * (cells.shape[2] - 1), device=cells.device)
    cells = cells.repeat_interleave(repeats, dim=2)
    return cells.repeat_interleave(spatial, dim=3).repeat_interleave(spatial, dim=4)


def load_bundle_weights(module: nn.Module, bundle, subfolder: str) -> None:
    """Copy a bundle part's weights (`subfolder`: "vae", "transformer") into `module`, a model of the same
    class and preset (strict); the bundle's bf16 tensors are loaded as fp32."""
    from ..bundle import check_bundle_dir

    src = type(module).from_pretrained(check_bundle_dir(bundle), subfolder=subfolder, torch_dtype=torch.float32)
    module.load_state_dict(src.state_dict())


def weighted_mean(err: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of `err`, each element weighted by `weight` (broadcast to err's shape); None: the plain mean."""
    if weight is None:
        return err.mean()
    weight = weight.expand_as(err)
    return (err * weight).sum() / weight.sum()


def resolve_device(name: str | None) -> torch.device:
    device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SmraboothError("--device cuda but this machine has no CUDA GPU (torch.cuda.is_available() is False)")
    return device


def default_workers() -> int:
    return max(0, min(8, (os.cpu_count() or 1) - 1))


# ---------------------------------------------------------------- data
class ClipStream(torch.utils.data.Dataset):
    """Example i -> make_item(seed): clips rendered on the fly, deterministic by index.

    `make_item` must be a module-level function (or functools.partial of one) so the workers can
    pickle it under any multiprocessing start method."""

    def __init__(self, make_item: Callable[[int], dict], base: int, clips: int = 0):
        self.make_item, self.base, self.clips = make_item, base, clips

    def __len__(self) -> int:
        return 2**62  # an endless stream; the sampler picks the indices

    def __getitem__(self, i: int) -> dict:
        return self.make_item(self.base + (i % self.clips if self.clips else i))


def _worker_init(_):
    torch.set_num_threads(1)  # rendering is numpy; one thread per worker process


def make_loader(stream: ClipStream, batch: int, start_step: int, steps: int, workers: int, pin: bool):
    """Batches of steps start_step .. steps-1, in order, each from its fixed range of examples."""
    sampler = range(start_step * batch, steps * batch)
    kw = {"num_workers": workers, "pin_memory": pin}
    if workers:
        kw.update(prefetch_factor=4, worker_init_fn=_worker_init, persistent_workers=False)
    return torch.utils.data.DataLoader(stream, batch_size=batch, sampler=sampler, drop_last=True, **kw)


def to_video(frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, F, H, W, 3) -> float (B, 3, F, H, W) in [-1, 1], as AutoencoderKLWan takes videos."""
    # contiguous: a permuted (channels-last) input sends every conv down a much slower path (10x on CPU)
    return frames.to(device, non_blocking=True).permute(0, 4, 1, 2, 3).contiguous().float() / 127.5 - 1.0


# ---------------------------------------------------------------- state
def save_state(path: Path, step: int, seconds: float, modules: dict[str, nn.Module], optimizer,
               generator: torch.Generator) -> None:
    """Atomically: a temporary file renamed over the old state."""
    payload = {
        "step": step,
        "seconds": seconds,
        "modules": {k: {n: t.detach().cpu() for n, t in m.state_dict().items()} for k, m in modules.items()},
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(generator),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_state_file(path: Path, device="cpu") -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as e:  # truncated or foreign: say which
        raise SmraboothError(f"could not read {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def load_modules(state: dict, modules: dict[str, nn.Module], source: Path) -> None:
    for name, module in modules.items():
        if name not in state["modules"]:
            raise SmraboothError(f"{source} has no weights for {name!r} (it holds {', '.join(state['modules'])})")
        try:
            module.load_state_dict(state["modules"][name])
        except RuntimeError as e:
            raise SmraboothError(f"{source}: the {name} weights do not fit this preset's model "
                                 f"({str(e).splitlines()[0][:200]})") from None


def restore_state(path: Path, modules: dict[str, nn.Module], optimizer, generator: torch.Generator,
                  device: torch.device) -> tuple[int, float]:
    state = load_state_file(path)  # on the CPU: RNG states must be; load_state_dict moves the rest
    load_modules(state, modules, path)
    optimizer.load_state_dict(state["optimizer"])
    if "rng" in state:
        set_rng_state(state["rng"], generator)
    else:  # a state.pt written before the RNG states were kept together
        set_rng_state({"generator": state["generator"], "torch": state["torch_rng"],
                       **{f"cuda{i}": s for i, s in enumerate(state.get("cuda_rng", []))}},
                      generator, numpy_state=state["numpy_rng"])
    return int(state["step"]), float(state["seconds"])


# ---------------------------------------------------------------- the loop
@dataclass
class StageParts:
    """What a stage gives the loop."""

    modules: dict[str, nn.Module]  # saved in state.pt (trained weights and any auxiliary heads)
    params: list[nn.Parameter]
    stream: ClipStream
    step: Callable[[dict, torch.Generator], dict[str, torch.Tensor]]  # batch -> {'loss': total, term: value}
    finish: Callable[[], None] | None = None  # after the checkpoint of every call (vae: latent statistics)
    after_step: Callable[[int], None] | None = None  # after each optimizer step, with the step count (EMA)
    workers: int | None = None  # loader worker processes; None: the config's (0 when items are only indices)


STOP_CHECK_STEPS = 25  # a multi-GPU run agrees on the time limit every this many steps (a sync point)


def run_stage(cfg: StageConfig, build: Callable[..., StageParts], resume: bool, t0: float | None = None) -> dict:
    """Train one stage until cfg.steps or cfg.minutes; checkpoint; return the summary. Under torchrun
    (dit only) every process runs this with its slice of each batch (distributed.py)."""
    from . import distributed

    shard = distributed.start(cfg)
    try:
        summary = _run_stage(cfg, build, resume, t0, shard)
        # the first process writes the last checkpoint alone: the others wait for it before gloo is torn
        # down (a process leaving early aborted its peer at exit, "terminate called without an active exception")
        distributed.barrier(shard)
        return summary
    finally:
        distributed.stop(shard)


def _run_stage(cfg: StageConfig, build: Callable[..., StageParts], resume: bool, t0: float | None,
               shard) -> dict:
    from tqdm.auto import tqdm

    from .distributed import agree, average_gradients, average_losses, barrier, check

    t0 = time.time() if t0 is None else t0
    if shard.main:
        cfg = prepare_stage_dir(cfg, resume)
    barrier(shard)
    if not shard.main:
        cfg = prepare_stage_dir(cfg, resume, write=False)
    check(cfg, shard)
    folder = cfg.stage_dir
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    parts = build(cfg, device, shard) if shard.world > 1 else build(cfg, device)
    fused = device.type == "cuda"  # one kernel for all tensors instead of a loop over them
    optimizer = torch.optim.AdamW(parts.params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay,
                                  fused=fused or None)
    generator = torch.Generator().manual_seed(cfg.seed)
    start, seconds = 0, 0.0
    if resume:
        start, seconds = restore_state(folder / STATE_FILE, parts.modules, optimizer, generator, device)
        barrier(shard)  # every process has read state.pt before the main one may write it again
    # only the main process writes the folder
    log = JsonlLog(folder / LOG_FILE, resume_step=start if resume else None) if shard.main else None
    workers = parts.workers if parts.workers is not None else (
        default_workers() if cfg.workers is None else cfg.workers)
    step = start
    if start < cfg.steps:
        loader = make_loader(parts.stream, cfg.batch, start, cfg.steps, workers, pin=device.type == "cuda")
        bar = tqdm(total=cfg.steps, initial=start, desc=cfg.stage, disable=not (cfg.progress and shard.main),
                   dynamic_ncols=True)
        t_train = last_save = time.time()
        pending = None  # last step's record, read once the next step is queued: no GPU sync per step

        def flush(record):
            values = {k: float(v) for k, v in record.pop("losses").items()}
            if log is not None:
                log.write({"step": record["step"], **values, "lr": record["lr"], "seconds": record["seconds"]})
            bar.set_postfix({k: f"{v:.4g}" for k, v in values.items() if k in ("loss", "epe", "psnr", "acc")})

        try:
            for batch in loader:
                lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else cfg.lr
                for group in optimizer.param_groups:
                    group["lr"] = lr
                for m in parts.modules.values():
                    m.train()
                losses = parts.step(batch, generator)
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                average_gradients(parts.params, shard)
                losses = average_losses(losses, shard)
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(parts.params, cfg.max_grad_norm)
                optimizer.step()
                if pending is not None:
                    flush(pending)
                step += 1
                if parts.after_step is not None:
                    parts.after_step(step)
                pending = {"step": step, "losses": {k: v.detach() for k, v in losses.items()}, "lr": lr,
                           "seconds": round(seconds + time.time() - t_train, 3)}
                bar.update(1)
                time_up = time.time() - t0 >= cfg.minutes * 60
                if shard.world > 1:  # all stop after the same step, or the next all-reduce waits forever
                    time_up = step % STOP_CHECK_STEPS == 0 and agree(time_up, shard, device)
                if time_up:
                    break
                if shard.main and time.time() - last_save >= CHECKPOINT_SECONDS:  # insurance against a killed call
                    save_state(folder / STATE_FILE, step, seconds + time.time() - t_train, parts.modules,
                               optimizer, generator)
                    last_save = time.time()
            if pending is not None:
                flush(pending)
        finally:
            bar.close()
        seconds += time.time() - t_train
        if shard.main:
            save_state(folder / STATE_FILE, step, seconds, parts.modules, optimizer, generator)
    if not shard.main:
        return {}
    if parts.finish is not None:
        for m in parts.modules.values():
            m.eval()
        parts.finish()
    summary = write_summary(cfg, step, seconds, start, processes=shard.world)
    done = "done" if step >= cfg.steps else f"stopped by --minutes {cfg.minutes:g}; --resume continues it"
    print(f"{cfg.stage}: step {step}/{cfg.steps} ({done}); "
          + ", ".join(f"{k} {v:.4g}" for k, v in summary["final"].items()))
    return summary


def write_summary(cfg: StageConfig, step: int, seconds: float, start: int = 0, processes: int = 1) -> dict:
    """summary.json: the stage's totals, and one record per call (steps it trained, its --minutes, and
    the number of GPU processes when there were several)."""
    records = [r for r in read_log(cfg.stage_dir / LOG_FILE) if r["step"] <= step][-20:]
    keys = [k for k in (records[-1] if records else {}) if k not in ("step", "lr", "seconds")]
    final = {k: float(np.mean([r[k] for r in records])) for k in keys}
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    path = cfg.stage_dir / SUMMARY_FILE
    calls = json.loads(path.read_text()).get("calls", []) if start and path.is_file() else []
    calls.append({"steps": step - start, "to_step": step, "minutes_limit": cfg.minutes, "date": date,
                  **({"note": "--resume"} if start else {}), **({"processes": processes} if processes > 1 else {})})
    summary = {"stage": cfg.stage, "preset": cfg.preset, "steps": step, "final": final,
               "minutes": round(seconds / 60, 2), "batch": cfg.batch, "lr": cfg.lr, "warmup": cfg.warmup,
               "seed": cfg.seed, "date": date, "calls": calls}
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
