"""Differentiable, memory-cheap decoding of Wan latents with a frozen `AutoencoderKLWan`.

MoRA backpropagates a loss on decoded frames into the latents. Stock `vae.decode` is differentiable,
but autograd then keeps every activation of every latent frame's decoder pass alive until backward:
about 39 GiB for a 6-latent window at 576x320 in bf16, and more than 80 GB at 832x480.

Wan's decoder is causal in time and already runs one latent frame at a time: each call decodes one
latent frame and reads the previous call's last input frames (up to `CACHE_T` = 2) of every causal
conv from a cache list (`feat_cache`). We run the same loop, but wrap each latent frame's call in
`torch.utils.checkpoint` and pass the cache in and out as explicit tensors. Autograd then stores only
each call's inputs (the latent frame and the small cache), and recomputes one call's activations at a
time in backward; the recomputation sees the same cache, so values and gradients equal the plain loop.
Peak memory drops from "all frames' activations" to "one frame's activations + the caches".

Latent spaces: `decode_latents_differentiable` takes latents in the NORMALISED space (what the DiT
sees and predicts, e.g. MoRA's z0_hat); `denormalize_latents` maps them to the VAE's raw space exactly
as `WanPipeline` does before `vae.decode`. Spatial tiling (`vae.enable_tiling`) is not used here.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

from ..errors import InternalError, SmraboothError

CACHE_T = 2  # frames of each causal conv's input kept for the next call (diffusers' CACHE_T)


def _latent_stats(vae, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(z.device, z.dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(z.device, z.dtype)
    return mean, inv_std


def denormalize_latents(vae, z: torch.Tensor) -> torch.Tensor:
    """Normalised (DiT) latents -> raw VAE latents, as WanPipeline does: z / (1/std) + mean."""
    mean, inv_std = _latent_stats(vae, z)
    return z / inv_std + mean


def normalize_latents(vae, z: torch.Tensor) -> torch.Tensor:
    """Raw VAE latents (e.g. `vae.encode(x).latent_dist.mode()`) -> normalised (DiT) latents."""
    mean, inv_std = _latent_stats(vae, z)
    return (z - mean) * inv_std


def to_unit_frames(video: torch.Tensor) -> torch.Tensor:
    """(B, 3, F, H, W) in [-1, 1] (what vae.decode returns) -> (B, F, 3, H, W) in [0, 1]."""
    return ((video + 1.0) / 2.0).permute(0, 2, 1, 3, 4)


def _decoder_step(decoder, x: torch.Tensor, first_chunk: bool, cache: list):
    """One latent frame through the causal decoder. `cache` is read, not mutated; returns the new one.

    Cache entries are None (conv not run yet), "Rep" (Wan's marker for a temporal upsampler after the
    first chunk) or a tensor; the decoder overwrites entries in the list it gets, so it gets a copy.
    """
    new_cache = list(cache)
    out = decoder(x, feat_cache=new_cache, feat_idx=[0], first_chunk=first_chunk)
    return out, new_cache


def _causal_conv(conv, x: torch.Tensor, cache: list, idx: int) -> torch.Tensor:
    """A cached causal conv exactly as Wan's decoder runs conv_in / conv_out (the last input frames go to the cache)."""
    cache_x = x[:, :, -CACHE_T:].clone()
    if cache_x.shape[2] < 2 and cache[idx] is not None:
        cache_x = torch.cat([cache[idx][:, :, -1:].to(cache_x.device), cache_x], dim=2)
    out = conv(x, cache[idx])
    cache[idx] = cache_x
    return out


def _run_segment(module, x: torch.Tensor, start: int, cache: list, first_chunk: bool | None):
    """One decoder module with the cache entries from `start` on; pure (it copies the cache), so
    checkpoint can rerun it."""
    new_cache, idx = list(cache), [start]
    if first_chunk is None:
        out = module(x, feat_cache=new_cache, feat_idx=idx)
    else:
        out = module(x, feat_cache=new_cache, feat_idx=idx, first_chunk=first_chunk)
    return out, new_cache, idx[0]


def _head(decoder, x: torch.Tensor, start: int, cache: list):
    new_cache = list(cache)
    out = _causal_conv(decoder.conv_out, decoder.nonlinearity(decoder.norm_out(x)), new_cache, start)
    return out, new_cache, start + 1


def _decoder_step_blocks(decoder, x: torch.Tensor, first_chunk: bool, cache: list):
    """`_decoder_step` with each up-block's residual blocks, upsampler and the head checkpointed again.

    Inside one latent frame's recomputation only these modules' inputs are stored, and one module's
    activations at a time are live: at 576x320 the full-resolution blocks hold 4 frames x 96 channels.
    """
    cache = list(cache)
    x = _causal_conv(decoder.conv_in, x, cache, 0)
    x, cache, idx = _run_segment(decoder.mid_block, x, 1, cache, None)
    for block in decoder.up_blocks:
        if type(block).__name__ != "WanUpBlock":  # Wan2.2's residual up-blocks: one segment each
            x, cache, idx = _checkpoint(_run_segment, block, x, idx, cache, first_chunk, use_reentrant=False)
            continue
        for module in [*block.resnets, *(block.upsamplers or [])]:
            x, cache, idx = _checkpoint(_run_segment, module, x, idx, cache, None, use_reentrant=False)
    x, cache, _ = _checkpoint(_head, decoder, x, idx, cache, use_reentrant=False)
    return x, cache


CHECKPOINT_MODES = ("none", "frame", "block")


def decode_latents_differentiable(
    vae, latents: torch.Tensor, checkpoint: bool | str = True, clamp: bool = True, store_last: int = 0
) -> torch.Tensor:
    """Decode NORMALISED Wan latents (B, 16, T, h, w) to a video (B, 3, 1 + 4(T-1), 8h, 8w) in [-1, 1].

    Same values as `vae.decode(denormalize_latents(vae, latents)).sample` (clamped to [-1, 1] like it;
    `clamp=False` keeps gradients of saturated pixels). Gradients flow to `latents`; keep the VAE frozen
    (`vae.requires_grad_(False)`). With `checkpoint=True` each latent frame's decoder pass is recomputed
    in backward instead of stored (`"frame"`, the same as True); `"block"` also checkpoints each block
    inside that recomputation (less memory, one more forward pass of the decoder); False or `"none"`
    stores everything. `store_last=K` stores the passes of the last K latent frames whatever the mode: a
    middle ground that skips their recomputation for about one frame's activations each (the last ones,
    because backward frees them first, before it recomputes the earlier frames). The first latent is
    decoded as a video's first frame (1 frame).
    """
    if latents.ndim != 5 or latents.shape[1] != vae.config.z_dim:
        raise InternalError(
            f"decode_latents_differentiable: expected latents (B, {vae.config.z_dim}, T, h, w), "
            f"got shape {tuple(latents.shape)}."
        )
    return decode_raw_latents(vae, denormalize_latents(vae, latents.to(vae.dtype)), checkpoint, clamp, store_last)


def decode_raw_latents(vae, z: torch.Tensor, checkpoint: bool | str = True, clamp: bool = True,
                       store_last: int = 0) -> torch.Tensor:
    """`decode_latents_differentiable` for RAW VAE latents (what the posterior gives, not normalised):
    `vae.decode(z).sample` computed frame by frame with the same checkpointing settings. With
    `clamp=False` and `checkpoint="none"` it is the decode a VAE is trained through."""
    mode = {True: "frame", False: "none"}.get(checkpoint, checkpoint)
    if mode not in CHECKPOINT_MODES:
        raise SmraboothError(f"decode checkpointing {checkpoint!r}: choose from {', '.join(CHECKPOINT_MODES)}")
    if store_last < 0:
        raise SmraboothError(f"store_last is a number of latent frames (>= 0), got {store_last}")
    x = vae.post_quant_conv(z)
    cache: list = [None] * sum(1 for m in vae.decoder.modules() if type(m).__name__ == "WanCausalConv3d")
    outs = []
    for i in range(x.shape[2]):
        xi = x[:, :, i : i + 1]
        if mode != "none" and torch.is_grad_enabled() and i < x.shape[2] - store_last:
            step = _decoder_step_blocks if mode == "block" else _decoder_step
            out, cache = _checkpoint(step, vae.decoder, xi, i == 0, cache, use_reentrant=False)
        else:
            out, cache = _decoder_step(vae.decoder, xi, i == 0, cache)
        outs.append(out)
    video = torch.cat(outs, dim=2)
    if vae.config.patch_size is not None:  # Wan2.2-style patchified VAE
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        video = unpatchify(video, patch_size=vae.config.patch_size)
    return video.clamp(-1.0, 1.0) if clamp else video
