"""Stage `vae`: AutoencoderKLWan (encoder + decoder) learns to reconstruct sprite clips.

    loss = |x_hat - x|_1 + (x_hat - x)^2 + kl_weight * KL(q(z|x) || N(0, I))      (means over elements)

x is the clip in [-1, 1], (B, 3, F, H, W); z is sampled from the posterior. With `--decoder-only` (and
`--init-from BUNDLE`) only the decoder trains, on the frozen encoder's posterior means, and the bundle's latent
statistics are kept: a sharper decoder for a DiT that stays valid. With `--sprite-weight W`
the reconstruction terms weight the sprite's region by 1 + W (`pixel_region`: the 8x8 cells the sprite
touches in any frame of a latent frame, so a smeared sprite costs as much as a missing one): a sprite
covers a few percent of a frame, and the plain loss is met well enough by painting the background alone (what the
first bundle's VAE did: PSNR 21.4 dB, sprite pixels not reconstructed at all). The KL weight is tiny
(1e-6, as latent-diffusion autoencoders): it only keeps the latents bounded; the DiT sees them
normalised by the per-channel mean and std measured afterwards, stored in the VAE config
(`latents_mean`, `latents_std`) exactly where WanPipeline reads them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch

from smrabooth.errors import SmraboothError
from smrabooth.models.vae_decode import decode_raw_latents
from smrabooth.train.common import autocast_enabled

from ..world import sample_clip
from .common import (
    STATS_BASE,
    STREAM_BASE,
    ClipStream,
    StageConfig,
    StageParts,
    load_bundle_weights,
    pixel_region,
    to_video,
    weighted_mean,
)

STATS_FILE = "latent_stats.json"
RECON_FILE = "reconstruction.json"
RECON_CLIPS = 16


def vae_item(seed: int, frames: int, size: int, sprite_scale: float = 1.0) -> dict:
    clip = sample_clip(seed, "train", frames, size, sprite_scale=sprite_scale)
    return {"frames": clip.frames, "masks": clip.masks}  # uint8 (F, H, W, 3), bool (F, H, W)


def encode_moments(vae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and log-variance (raw latent space), as vae.encode computes them."""
    h = vae._encode(x)
    mean, logvar = torch.chunk(h, 2, dim=1)
    return mean, torch.clamp(logvar, -30.0, 20.0)  # DiagonalGaussianDistribution's clamp


def build_vae_stage(cfg: StageConfig, device: torch.device) -> StageParts:
    from ..bundle import build_sprites_models

    vae = build_sprites_models(cfg.preset, cfg.seed).pipe.vae
    if cfg.init_from:
        load_bundle_weights(vae, cfg.init_from, "vae")
    vae = vae.to(device).requires_grad_(True)
    kept_stats = None
    if cfg.decoder_only:  # the encoder fixes the latent space the DiT was trained on
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
        config = json.loads((Path(cfg.init_from) / "vae" / "config.json").read_text())
        kept_stats = {k: config[k] for k in ("latents_mean", "latents_std")}
    autocast = autocast_enabled(cfg.mixed_precision, device)

    def step(batch: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
        x = to_video(batch["frames"], device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            with torch.set_grad_enabled(not cfg.decoder_only):
                mean, logvar = encode_moments(vae, x)
            noise = torch.randn(mean.shape, generator=gen).to(device)
            # decoder only: the posterior mean, what the trainers encode and the DiT learns to produce
            z = mean if cfg.decoder_only else mean + torch.exp(0.5 * logvar) * noise
            # no final clamp: its gradient is zero outside [-1, 1], so a pixel pushed past it never comes back
            rec = decode_raw_latents(vae, z, checkpoint="none", clamp=False)
        rec, mean, logvar = rec.float(), mean.float(), logvar.float()
        masks = batch["masks"].to(device)
        weight = 1.0 + cfg.sprite_weight * pixel_region(masks) if cfg.sprite_weight else None
        l1 = weighted_mean((rec - x).abs(), weight)
        mse = weighted_mean((rec - x) ** 2, weight)
        kl = 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar).mean()
        loss = l1 + mse + cfg.kl_weight * kl
        err = (rec.detach().clamp(-1, 1) - x).abs()
        psnr = 10 * torch.log10(4.0 / (err**2).mean())  # range 2
        # what the DiT must be able to draw; a masked sum, not err[mask], so the step needs no GPU sync
        on_sprite = masks[:, None].expand_as(err).float()
        sprite_l1 = (err * on_sprite).sum() / on_sprite.sum().clamp_min(1)
        return {"loss": loss, "l1": l1, "mse": mse, "kl": kl, "psnr": psnr, "sprite_l1": sprite_l1}

    def finish() -> None:
        stats = dict(kept_stats) if kept_stats else measure_latent_stats(vae, cfg.frames, cfg.size, cfg.stats_clips, device)
        apply_latent_stats(vae, stats)
        state = torch.load(cfg.stage_dir / "state.pt", map_location="cpu", weights_only=True)
        stats["step"] = int(state["step"])
        (cfg.stage_dir / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
        # on full-length clips whatever --frames trained on: a VAE trained on short clips fails on later frames
        from ..bundle import get_preset

        frames = max(cfg.frames, get_preset(cfg.preset).frames)
        errors = {"step": stats["step"], "frames": frames,
                  **reconstruction_errors(vae, frames, cfg.size, RECON_CLIPS, device)}
        (cfg.stage_dir / RECON_FILE).write_text(json.dumps(errors) + "\n")
        print("vae reconstruction L1 per frame, sprite pixels: " + " ".join(f"{v:.2f}" for v in errors["sprite"]))

    stream = ClipStream(functools.partial(vae_item, frames=cfg.frames, size=cfg.size, sprite_scale=cfg.sprite_scale),
                        STREAM_BASE["vae"], cfg.clips)
    params = [p for p in vae.parameters() if p.requires_grad]
    return StageParts(modules={"vae": vae}, params=params, stream=stream, step=step, finish=finish)


def stats_batches(frames: int, size: int, n_clips: int, device: torch.device, batch: int):
    """Clips 0..n-1 of the statistics stream (never trained on) in batches: (video (B, 3, F, H, W) in
    [-1, 1], sprite masks bool (B, F, H, W)) on `device`."""
    for start in range(0, n_clips, batch):
        items = [vae_item(s, frames, size) for s in range(STATS_BASE + start, STATS_BASE + min(n_clips, start + batch))]
        masks = torch.from_numpy(np.stack([i["masks"] for i in items])).to(device)
        yield to_video(torch.from_numpy(np.stack([i["frames"] for i in items])), device), masks


@torch.no_grad()
def measure_latent_stats(vae, frames: int, size: int, n_clips: int, device: torch.device, batch: int = 16) -> dict:
    """Per-channel mean and std of the posterior means (what our trainers encode with) over n clips."""
    vae.eval()
    total, total_sq, count = 0.0, 0.0, 0
    for x, _ in stats_batches(frames, size, n_clips, device, batch):
        mean, _ = encode_moments(vae, x)
        z = mean.double().transpose(0, 1).reshape(mean.shape[1], -1)  # (C, B*T*H*W)
        total = total + z.sum(1)
        total_sq = total_sq + (z**2).sum(1)
        count += z.shape[1]
    mu = total / count
    std = (total_sq / count - mu**2).clamp_min(1e-12).sqrt()
    return {"latents_mean": [round(float(v), 6) for v in mu], "latents_std": [round(float(v), 6) for v in std],
            "clips": n_clips}


@torch.no_grad()
def reconstruction_errors(vae, frames: int, size: int, n_clips: int, device: torch.device, batch: int = 8) -> dict:
    """Mean L1 (pixels in [-1, 1]) of encode -> decode per frame, on sprite pixels and on background pixels,
    over n clips of the statistics stream (never trained on). What the DiT can draw at best."""
    vae.eval()
    sprite, background, n_sprite, n_background = 0.0, 0.0, 0.0, 0.0
    for x, masks in stats_batches(frames, size, n_clips, device, batch):
        m = masks[:, None].float()
        mean, _ = encode_moments(vae, x)
        err = (decode_raw_latents(vae, mean, checkpoint="none") - x).abs().mean(1, keepdim=True)
        sprite, n_sprite = sprite + (err * m).sum((0, 1, 3, 4)), n_sprite + m.sum((0, 1, 3, 4))
        background, n_background = background + (err * (1 - m)).sum((0, 1, 3, 4)), n_background + (1 - m).sum((0, 1, 3, 4))
    return {"sprite": [round(float(v), 4) for v in sprite / n_sprite.clamp_min(1)],
            "background": [round(float(v), 4) for v in background / n_background.clamp_min(1)], "clips": n_clips}


def apply_latent_stats(vae, stats: dict) -> None:
    """Store them where WanPipeline and `normalize_latents` read them (the VAE config)."""
    vae.register_to_config(latents_mean=list(stats["latents_mean"]), latents_std=list(stats["latents_std"]))


def read_latent_stats(stage_dir: Path) -> dict:
    path = Path(stage_dir) / STATS_FILE
    if not path.is_file():
        raise SmraboothError(f"{path} is missing: the vae stage measures it at the end of every call; run "
                             f"`train_sprites.py vae --out ... --resume` to write it")
    return json.loads(path.read_text())


def load_trained_vae(out: str | Path, preset: str, device: torch.device, vae=None):
    """The vae stage's weights and latent statistics, frozen (for the dit stage and assemble); loaded into
    `vae` when given (an AutoencoderKLWan of the preset), else into a new one."""
    from .common import load_modules, load_state_file

    stage_dir = Path(out) / "vae"
    path = stage_dir / "state.pt"
    if not path.is_file():
        raise SmraboothError(f"{path} is missing: train the VAE first (`train_sprites.py vae --out {out}`)")
    if vae is None:
        from ..bundle import build_sprites_models

        vae = build_sprites_models(preset).pipe.vae
    load_modules(load_state_file(path), {"vae": vae}, path)
    apply_latent_stats(vae, read_latent_stats(stage_dir))
    return vae.to(device).eval().requires_grad_(False)
