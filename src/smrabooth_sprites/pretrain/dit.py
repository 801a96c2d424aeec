"""Stage `dit`: WanTransformer3DModel learns text-to-video flow matching on captioned sprite clips.

Exactly the objective of our LoRA trainers (train/subject.py, train/motion.py), on the full model:
z0 = normalize_latents(vae, posterior mean) with the vae stage's frozen VAE and measured statistics,
sigma from `training_sigmas(shift)` (index uniform, one per clip), z_t = (1 - sigma) z0 + sigma noise,
target = noise - z0, MSE. An EMA of the weights (decay 0.999, `--ema`) is kept beside them and is
what `assemble` ships. 10% of captions are replaced by the empty prompt so classifier-free
guidance works. With `--image-fraction P`, a share P of the steps train on one-frame stills
("a picture of a red striped star [on a blue background]", `world.sample_still`) instead of clips,
as Wan itself trains on images and videos: the subject LoRA trains on images as one-frame videos, and
a DiT that never saw one cannot start from anything. The text encoder (a random umT5) stays frozen:
each word of the sprites vocabulary already gets a distinct embedding, and the DiT learns to read them.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from pathlib import Path

import torch

from smrabooth.train.common import autocast_enabled

from ..bundle import get_preset
from ..world import sample_clip, sample_still
from .common import (
    STILLS_BASE,
    STREAM_BASE,
    ClipStream,
    StageConfig,
    StageParts,
    default_workers,
    latent_mask,
    load_bundle_weights,
    to_video,
    weighted_mean,
)
from .distributed import Shard
from .vae import encode_moments, load_trained_vae

MAX_SEQUENCE_LENGTH = 512  # what WanPipeline pads prompts to; training sees the same padding


def dit_item(seed: int, frames: int, size: int, sprite_scale: float = 1.0, partial_captions: float = 0.0) -> dict:
    clip = sample_clip(seed, "train", frames, size, sprite_scale=sprite_scale, partial_captions=partial_captions)
    return {"frames": clip.frames, "caption": clip.caption, "masks": clip.masks}


def clip_stream(cfg: StageConfig, clips: int = 0) -> ClipStream:
    """The dit stage's stream of rendered clips (what the pool encodes, or the loop reads directly)."""
    item = functools.partial(dit_item, frames=cfg.frames, size=cfg.size, sprite_scale=cfg.sprite_scale,
                             partial_captions=cfg.partial_captions)
    return ClipStream(item, STREAM_BASE["dit"], clips)


def still_item(seed: int, size: int, partial_captions: float = 0.0) -> dict:
    """A still as a one-frame clip, what the subject LoRA trains on (`train.subject` encodes images so)."""
    image, mask, caption = sample_still(seed, "train", size, partial_captions)
    return {"frames": image[None], "caption": caption, "masks": mask[None]}


@torch.no_grad()
def encode_clips(vae, frames: torch.Tensor, device: torch.device, autocast: bool) -> torch.Tensor:
    """uint8 clips (B, F, H, W, 3) -> the DiT's z0: normalised posterior means (fp32)."""
    from smrabooth.models.vae_decode import normalize_latents

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        mean, _ = encode_moments(vae, to_video(frames, device))
    return normalize_latents(vae, mean.float())


def weighted_flow_loss(u: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error, each latent cell weighted (weights broadcast over channels)."""
    return weighted_mean((u.float() - target) ** 2, weight)


class TextCache:
    """Caption -> umT5 embedding, computed once per caption string (frozen encoder).

    WanPipeline zero-pads every prompt to 512 tokens; only the unpadded rows are kept (a caption is
    about 12 tokens), and `batch` pads them back, so memory grows with the distinct captions, not 512x."""

    def __init__(self, pipe, device: torch.device):
        self.pipe, self.device, self.cache = pipe, device, {}

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> None:
        emb, _ = self.pipe.encode_prompt(texts, do_classifier_free_guidance=False,
                                         max_sequence_length=MAX_SEQUENCE_LENGTH, device=self.device)
        emb = emb.float()
        for text, e in zip(texts, emb):
            rows = (e.abs().sum(-1) > 0).nonzero()
            n = int(rows.max()) + 1 if len(rows) else 1
            self.cache[text] = e[:n].clone()

    def batch(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self._encode(missing)
        dim = self.pipe.text_encoder.config.d_model
        out = torch.zeros(len(texts), MAX_SEQUENCE_LENGTH, dim, device=self.device)
        for i, t in enumerate(texts):
            e = self.cache[t]
            out[i, : e.shape[0]] = e
        return out


def pool_file(folder: Path, cfg: StageConfig, vae, stills: bool, autocast: bool) -> Path:
    """Where a pool of these settings and this VAE is kept: the name hashes everything its latents
    depend on (which clips or stills, how they are drawn and captioned, the VAE's weights, autocast)."""
    h = hashlib.sha256(json.dumps({
        "stills": stills, "n": cfg.stills if stills else cfg.pool, "frames": cfg.frames, "size": cfg.size,
        "sprite_scale": cfg.sprite_scale, "partial_captions": cfg.partial_captions, "autocast": autocast,
    }, sort_keys=True).encode())
    for name, t in vae.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return Path(folder) / f"pool-{'stills' if stills else 'clips'}-{h.hexdigest()[:16]}.pt"


def index_item(seed: int) -> dict:
    return {"index": seed}


class LatentPool:
    """Clips 0..n-1 of the dit stream (n = --pool), rendered and encoded once; example i of the stage is
    pool entry `order(i)`, a fresh permutation of the pool for every pass (seeded, so a resumed call sees
    the same). With `stills=True`, the --stills one-frame stills instead, drawn by `sample`.

    Rendering (~300 clips/s on 16 cores) cannot feed a small DiT on a GPU; the latents of 30,000 clips
    take 0.6 GB. With `cache` (a folder), the pool is kept there (`pool_file`) and the next call with the
    same clips and VAE loads it instead of rendering again (about 2 minutes of a GPU call); only
    `save=True` (the main process) writes it."""

    def __init__(self, pipe, cfg: StageConfig, device: torch.device, workers: int, batch: int = 32,
                 stills: bool = False, cache: Path | None = None, save: bool = True):
        self.n, self.seed, self._orders = cfg.stills if stills else cfg.pool, cfg.seed, {}
        autocast = autocast_enabled(cfg.mixed_precision, device)
        path = pool_file(cache, cfg, pipe.vae, stills, autocast) if cache is not None else None
        if path is not None and path.is_file():
            saved = torch.load(path, map_location=device, weights_only=True)
            self.latents, self.cells, self.captions = saved["latents"], saved["cells"], saved["captions"]
            return
        from torch.utils.data import DataLoader

        from .common import _worker_init

        if stills:
            item = functools.partial(still_item, size=cfg.size, partial_captions=cfg.partial_captions)
            stream = ClipStream(item, STILLS_BASE)
        else:
            stream = clip_stream(cfg)
        loader = DataLoader(torch.utils.data.Subset(stream, range(self.n)), batch_size=batch, num_workers=workers,
                            worker_init_fn=_worker_init if workers else None)
        latents, cells, self.captions = [], [], []
        for b in loader:
            latents.append(encode_clips(pipe.vae, b["frames"], device, autocast).to(torch.float16))
            cells.append(latent_mask(b["masks"]).to(device, torch.uint8))
            self.captions += list(b["caption"])
        self.latents, self.cells = torch.cat(latents), torch.cat(cells)
        if path is not None and save:
            tmp = path.with_name(path.name + ".tmp")
            torch.save({"latents": self.latents.cpu(), "cells": self.cells.cpu(), "captions": self.captions}, tmp)
            os.replace(tmp, path)

    def order(self, i: int) -> int:
        epoch, k = divmod(int(i), self.n)
        if epoch not in self._orders:
            gen = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._orders = {epoch: torch.randperm(self.n, generator=gen)}
        return int(self._orders[epoch][k])

    def batch(self, indices) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        return self.entries([self.order(i - STREAM_BASE["dit"]) for i in indices])

    def sample(self, b: int, gen: torch.Generator) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """b entries drawn at random with the training generator (so resume repeats them)."""
        return self.entries(torch.randint(self.n, (b,), generator=gen).tolist())

    def entries(self, picks: list[int]) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        return self.latents[picks].float(), [self.captions[j] for j in picks], self.cells[picks].float()


def build_dit_stage(cfg: StageConfig, device: torch.device, shard: Shard | None = None) -> StageParts:
    """`shard`: this process's part of a multi-GPU run (distributed.py); every process draws the random
    numbers of the whole batch and trains on its slice."""
    from smrabooth.schedules import training_sigmas

    from ..bundle import build_sprites_models

    shard = shard or Shard()
    models = build_sprites_models(cfg.preset, cfg.seed)
    pipe = models.pipe
    if cfg.init_from and not (Path(cfg.out) / "vae" / "state.pt").is_file():
        # no vae stage here: the bundle's VAE, with the latent statistics its DiT was trained with
        from diffusers import AutoencoderKLWan

        pipe.vae = AutoencoderKLWan.from_pretrained(cfg.init_from, subfolder="vae", torch_dtype=torch.float32)
        pipe.vae.to(device).eval().requires_grad_(False)
    else:
        pipe.vae = load_trained_vae(cfg.out, cfg.preset, device, vae=pipe.vae)
    pipe.text_encoder.to(device).eval().requires_grad_(False)
    if cfg.init_from:
        load_bundle_weights(pipe.transformer, cfg.init_from, "transformer")
    transformer = pipe.transformer.to(device).requires_grad_(True)
    texts = TextCache(pipe, device)
    sigmas = training_sigmas(get_preset(cfg.preset).wan.flow_shift)
    autocast = autocast_enabled(cfg.mixed_precision, device)

    workers = default_workers() if cfg.workers is None else cfg.workers
    # kept in the stage folder, so the next call on a warm machine skips rendering and encoding them
    kept = {"cache": cfg.stage_dir, "save": shard.main}
    pool = LatentPool(pipe, cfg, device, workers, **kept) if cfg.pool else None
    stills = LatentPool(pipe, cfg, device, workers, stills=True, **kept) if cfg.image_fraction else None

    def step(batch: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
        # joint image-video training, as Wan's own: a share of steps are one-frame stills, so the subject
        # LoRA (trained on images as one-frame videos) starts from something the DiT can draw
        if stills is not None and float(torch.rand((), generator=gen)) < cfg.image_fraction:
            z0, captions, cells = stills.sample(cfg.batch, gen)
        elif pool is not None:
            z0, captions, cells = pool.batch(batch["index"].tolist())
        else:
            z0, captions = encode_clips(pipe.vae, batch["frames"], device, autocast), batch["caption"]
            cells = latent_mask(batch["masks"]).to(device)
        b = z0.shape[0]
        drop = torch.rand(b, generator=gen) < cfg.caption_dropout
        captions = ["" if d else c for d, c in zip(drop.tolist(), captions)]
        sigma = sigmas[torch.randint(len(sigmas), (b,), generator=gen)].to(device)
        noise = torch.randn(z0.shape, generator=gen).to(device)
        weight = 1.0 + cfg.sprite_weight * cells if cfg.sprite_weight else None
        share = 1.0
        if shard.world > 1:
            # this process's slice, its loss scaled so that the mean over the processes (what the
            # averaged gradients follow) is the weighted mean over the whole batch
            mine = shard.part(b)
            share = 1.0 if weight is None else shard.world * weight[mine].sum() / weight.sum()
            z0, noise, sigma, captions = z0[mine], noise[mine], sigma[mine], captions[mine]
            weight = None if weight is None else weight[mine]
            b = z0.shape[0]
        s = sigma.view(b, 1, 1, 1, 1)
        z_t = (1 - s) * z0 + s * noise
        target = noise - z0
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            u = transformer(z_t, sigma * 1000, texts.batch(captions), return_dict=False)[0]
        flow = weighted_flow_loss(u, target, weight) * share
        return {"loss": flow, "flow": flow}

    modules = {"transformer": transformer}
    after_step = None
    if cfg.ema:
        # EMA of the weights, what assemble ships; the decay ramps up as in diffusers' EMAModel,
        # min(ema, (1 + step) / (10 + step)), so a short run is not dominated by the random start
        ema = copy.deepcopy(transformer).requires_grad_(False)
        modules["ema"] = ema
        live, shadow = list(transformer.parameters()), list(ema.parameters())

        @torch.no_grad()
        def after_step(step: int) -> None:
            decay = min(cfg.ema, (1 + step) / (10 + step))
            torch._foreach_lerp_(shadow, live, 1.0 - decay)

    if pool is not None:  # the loop's loader only hands out example indices
        stream = ClipStream(index_item, STREAM_BASE["dit"])
    else:
        stream = clip_stream(cfg, cfg.clips)
    return StageParts(modules=modules, params=list(transformer.parameters()), stream=stream, step=step,
                      after_step=after_step, workers=0 if pool is not None else None)
