"""Motion Representation Alignment (MoRA): building blocks of the Stage 2 motion loss.

Per training step (docs/method.md stage 2, the paper's supplementary 2.2 / Alg. 1), with the paper's
window of 6 latents, stride 2 and drop 5 (recipes.MotionRecipe):

    z0_hat = z_t - sigma * u                        one_step_z0
    window of 6 latents starting at s               valid_window_starts
    decode it (21 frames), drop 5, keep 16          models.vae_decode + window_source_frames
    L_MoRA = | flow(kept pairs) - flow(ref pairs) |_1   mora_loss, reference_flows (cached)

Window arithmetic. Wan's causal VAE encodes frame 0 into latent 0 and frames 4k-3..4k into latent k.
Decoding latents s..s+W-1 on their own, latent s is treated as a first frame (1 frame out) and each
later latent s+j gives 4 frames, 1 + 4(W-1) in all; decoded frame d >= 1 comes from latent s+ceil(d/4)
and lines up with source frame 4s + d. Decoded frame 0 is latent s squeezed into one "first frame":
it is exact only for s = 0 (source frame 0); for s > 0 it is a warm-up frame with no exact source
frame, and the following frames also start from an empty causal cache, which is why MoRA drops the
first `drop` frames. Kept frames d = drop .. 4(W-1) map to source frames 4s+drop .. 4s+4(W-1):

    latents (clip)   0 | 1       | 2       | ... | s         | s+1         | ... | s+5
    source frames    0 | 1..4    | 5..8    | ... | 4s-3..4s  | 4s+1..4s+4  | ... | 4s+17..4s+20
    window decode                                | d=0       | d=1..4      | ... | d=17..20
    kept (drop=5)                                              (all dropped) ... d=5..20 -> 4s+5..4s+20
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import InternalError, SmraboothError
from ..recipes import PAPER

_WINDOW, _STRIDE, _DROP = PAPER.motion.window, PAPER.motion.window_stride, PAPER.motion.drop_frames

FlowFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def one_step_z0(z_t: torch.Tensor, velocity: torch.Tensor, sigma) -> torch.Tensor:
    """Clean-latent estimate of flow matching (Alg. 1): z0_hat = z_t - sigma * u.

    `sigma` is a float, a 0-d tensor or one value per batch item (B,), broadcast over the other dims.
    """
    sigma = torch.as_tensor(sigma, device=z_t.device, dtype=z_t.dtype)
    if sigma.ndim == 1:
        if sigma.shape[0] != z_t.shape[0]:
            raise InternalError(f"one_step_z0: {sigma.shape[0]} sigmas for a batch of {z_t.shape[0]}.")
        sigma = sigma.view(-1, *([1] * (z_t.ndim - 1)))
    elif sigma.ndim != 0:
        raise InternalError(f"one_step_z0: sigma must be a scalar or (B,), got shape {tuple(sigma.shape)}.")
    return z_t - sigma * velocity


def decoded_frame_count(window: int) -> int:
    """Frames Wan's causal VAE decodes from `window` latents on their own: 1 + 4 (window - 1)."""
    return 1 + 4 * (window - 1)


def _check_window(window: int, drop: int) -> None:
    if window < 1:
        raise SmraboothError(f"MoRA window must be at least 1 latent frame, got {window}.")
    if not 0 <= drop < decoded_frame_count(window) - 1:
        raise SmraboothError(
            f"MoRA drop={drop} must be in [0, {decoded_frame_count(window) - 2}] for a window of {window} "
            f"latents ({decoded_frame_count(window)} decoded frames; at least 2 must stay for one flow)."
        )


def valid_window_starts(num_latent_frames: int, window: int = _WINDOW, stride: int = _STRIDE) -> list[int]:
    """Every window start s = 0, stride, 2*stride, ... with s + window <= num_latent_frames."""
    if window < 1 or stride < 1:
        raise SmraboothError(f"MoRA window ({window}) and stride ({stride}) must be positive integers.")
    if num_latent_frames < window:
        raise SmraboothError(
            f"The clip has {num_latent_frames} latent frames ({decoded_frame_count(num_latent_frames)} video "
            f"frames), fewer than the MoRA window of {window} latents; use a longer clip or a smaller window."
        )
    return list(range(0, num_latent_frames - window + 1, stride))


WINDOW_WRAPS = ("fit", "reach")


def window_starts(num_latent_frames: int, window: int = _WINDOW, stride: int = _STRIDE, wrap: str = "fit") -> list[int]:
    """The window starts one cycle visits, in order (training takes starts[k % len(starts)] at its k-th MoRA step).

    fit: every start whose window fits the clip (`valid_window_starts`). reach (the authors' code): the start
    moves by `stride` and goes back to 0 as soon as start + window reaches the latent count, so a window
    never ends on the clip's last latent (13 latents, window 6: 0, 2, 4, 6 under both rules; 12: 0, 2, 4
    under reach, 0, 2, 4, 6 under fit)."""
    if wrap == "fit":
        return valid_window_starts(num_latent_frames, window, stride)
    if wrap != "reach":
        raise SmraboothError(f"MoRA window wrap {wrap!r}: choose {', '.join(WINDOW_WRAPS)}")
    valid_window_starts(num_latent_frames, window, stride)  # the same errors for a clip shorter than the window
    return [0] + list(range(stride, num_latent_frames - window, stride))


def window_source_frames(start: int, window: int = _WINDOW, drop: int = _DROP) -> range:
    """Source (pixel) frame indices matching the kept decoded frames of the window at latent `start`.

    4*start + drop .. 4*start + 4*(window-1), inclusive (module docstring: the derivation).
    """
    _check_window(window, drop)
    if start < 0:
        raise InternalError(f"MoRA window start must be >= 0, got {start}.")
    return range(4 * start + drop, 4 * start + decoded_frame_count(window))


def window_ref_flows(ref_flows: torch.Tensor, start: int, window: int = _WINDOW, drop: int = _DROP) -> torch.Tensor:
    """Slice a whole clip's cached flows (F_clip-1, 2, H, W) to the window: flows k -> k+1, k kept, k+1 kept."""
    frames = window_source_frames(start, window, drop)
    if frames.stop > ref_flows.shape[0] + 1:
        raise InternalError(
            f"MoRA window at latent {start} needs source frames up to {frames.stop - 1}, but the reference "
            f"flows cover {ref_flows.shape[0] + 1} frames; pick a start from valid_window_starts()."
        )
    return ref_flows[frames.start : frames.stop - 1]


def _pair_flows(frames: torch.Tensor, flow_fn: FlowFn, chunk: int | None = None) -> torch.Tensor:
    """Flows between adjacent frames of (B, F, 3, H, W): (B, F-1, 2, H, W).

    chunk=None runs all pairs in one flow_fn call. chunk=k runs k pairs at a time, each call under
    gradient checkpointing: autograd keeps only the frames and the flows, and backward recomputes one
    chunk's SEA-RAFT activations at a time (same values and gradients, one more SEA-RAFT forward).
    """
    b, f = frames.shape[:2]
    first = frames[:, :-1].reshape(b * (f - 1), *frames.shape[2:])
    second = frames[:, 1:].reshape(b * (f - 1), *frames.shape[2:])
    if chunk is None or not torch.is_grad_enabled():
        flow = flow_fn(first, second)
    else:
        from torch.utils.checkpoint import checkpoint

        flow = torch.cat([checkpoint(flow_fn, first[i : i + chunk], second[i : i + chunk], use_reentrant=False)
                          for i in range(0, first.shape[0], chunk)])
    return flow.reshape(b, f - 1, *flow.shape[1:])


FLOW_UNITS = ("pixels", "size")
MORA_REFERENCES = ("frames", "decoded")


def flow_l1(pred_flows: torch.Tensor, ref_flows: torch.Tensor, units: str = "pixels") -> torch.Tensor:
    """The L1 between flows (..., 2, H, W). pixels: the mean over everything. size (the authors' code): x
    divided by the flow's width and y by its height, each component's mean taken over the pixels and the
    two summed (so twice the mean over everything of the scaled difference), then averaged over pairs."""
    diff = (pred_flows - ref_flows.to(pred_flows)).abs()
    if units == "pixels":
        return diff.mean()
    if units != "size":
        raise SmraboothError(f"flow units {units!r}: choose {', '.join(FLOW_UNITS)}")
    h, w = diff.shape[-2:]
    scale = torch.tensor([1.0 / w, 1.0 / h], dtype=diff.dtype, device=diff.device).view(2, 1, 1)
    return 2 * (diff * scale).mean()


def mora_loss(pred_frames: torch.Tensor, ref_flows: torch.Tensor, flow_fn: FlowFn,
              chunk: int | None = None, units: str = "pixels") -> torch.Tensor:
    """L_MoRA = mean |flow(pred pairs) - ref_flows| (`flow_l1` with `units`).

    pred_frames: (B, F, 3, H, W) or (F, 3, H, W) in [0, 1], the kept decoded frames (with grad).
    ref_flows: (F-1, 2, H, W), the reference clip's flows between the matching frames, shared by the
        batch, or (B, F-1, 2, H, W), one reference per batch item.
    flow_fn(image1, image2) -> (N, 2, H, W): a frozen optical-flow model, e.g. SEA-RAFT.
    chunk: frame pairs per flow_fn call, each checkpointed (None: all at once, activations stored).
    """
    if chunk is not None and chunk < 1:
        raise SmraboothError(f"mora_loss: chunk must be a positive number of frame pairs, got {chunk}.")
    if pred_frames.ndim == 4:
        pred_frames = pred_frames.unsqueeze(0)
    if pred_frames.ndim != 5 or pred_frames.shape[2] != 3 or pred_frames.shape[1] < 2:
        raise SmraboothError(f"mora_loss: pred_frames must be (B, F>=2, 3, H, W), got {tuple(pred_frames.shape)}.")
    expected = (pred_frames.shape[1] - 1, 2, *pred_frames.shape[3:])
    if tuple(ref_flows.shape) not in (expected, (pred_frames.shape[0], *expected)):
        raise InternalError(f"mora_loss: ref_flows must be {expected} for these frames, got {tuple(ref_flows.shape)}.")
    pred_flows = _pair_flows(pred_frames, flow_fn, chunk)
    return flow_l1(pred_flows, ref_flows, units)


@torch.no_grad()
def reference_flows(frames: torch.Tensor, flow_fn: FlowFn, batch_size: int = 8) -> torch.Tensor:
    """Flows between adjacent reference frames (F, 3, H, W) in [0, 1] -> (F-1, 2, H, W), computed once."""
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] < 2:
        raise SmraboothError(f"reference_flows: frames must be (F>=2, 3, H, W) in [0, 1], got {tuple(frames.shape)}.")
    if batch_size < 1:
        raise SmraboothError(f"reference_flows: batch_size must be >= 1, got {batch_size}.")
    flows = []
    for i in range(0, frames.shape[0] - 1, batch_size):
        j = min(i + batch_size, frames.shape[0] - 1)
        flows.append(flow_fn(frames[i:j], frames[i + 1 : j + 1]))
    return torch.cat(flows)


@torch.no_grad()
def decoded_window_flows(vae, latent: torch.Tensor, starts, flow_fn: FlowFn, window: int = _WINDOW,
                         drop: int = _DROP) -> dict[int, torch.Tensor]:
    """MoRA's reference for `mora_reference="decoded"`: per window start, the flows between the kept frames of
    the clean latent (16, T, h, w) decoded exactly as the one-step estimate is. With it the clean latent scores
    0, whatever the VAE loses of the clip's motion (a VAE that keeps it gives the reference frames' flows)."""
    return {s: reference_flows(decode_window(vae, latent[None], s, window, drop, checkpoint=False)[0], flow_fn)
            for s in starts}


# The range of the decoded frames handed to the flow model, whose inputs are [0, 1] (compute_flow: x 255).
# matched: the decode's [-1, 1] mapped to [0, 1], as the reference frames. authors (their code): the decode's
# [-1, 1] as it is, so SEA-RAFT sees the prediction in [-255, 255] and the reference in [0, 255].
MORA_FRAME_RANGES = ("matched", "authors")


# How the window is decoded. whole: in one pass (diffusers' vae.decode). tiled (the authors' pipeline, DiffSynth's
# default): spatial tiles of TILE latents every TILE_STRIDE, each decoded alone, blended with linear ramps over the
# overlaps and clamped; each tile's mid-block attention sees only its tile, so the frames differ from a whole
# decode (at their 576x320, four tiles of up to 30x52 latents).
MORA_DECODES = ("whole", "tiled")
TILE, TILE_STRIDE = (30, 52), (15, 26)


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Where the tiles along one axis start: every `stride`, until one reaches the end (the last may be cut)."""
    return [s for s in range(0, size, stride) if not (s - stride >= 0 and s - stride + tile >= size)]


def tiled_pixels(height: int, width: int) -> float:
    """What the tiled decode of an (height, width) latent grid decodes, as a multiple of the grid (overlaps twice)."""
    rows = sum(min(TILE[0], height - h) for h in tile_starts(height, TILE[0], TILE_STRIDE[0]))
    cols = sum(min(TILE[1], width - w) for w in tile_starts(width, TILE[1], TILE_STRIDE[1]))
    return rows * cols / (height * width)


def _ramp_mask(h: int, w: int, open_sides: tuple[bool, bool, bool, bool], border: tuple[int, int]) -> torch.Tensor:
    """(h, w) blend weights of one tile: 1 inside, a linear ramp (1/b .. 1) over `border` pixels on each side that
    meets another tile (top, bottom, left, right); the smaller of the two axes' weights."""
    def axis(n, low, high, b):
        x = torch.ones(n)
        ramp = (torch.arange(b) + 1) / b
        if low:
            x[:b] = ramp
        if high:
            x[-b:] = ramp.flip(0)
        return x
    rows = axis(h, open_sides[0], open_sides[1], border[0])[:, None].expand(h, w)
    cols = axis(w, open_sides[2], open_sides[3], border[1])[None, :].expand(h, w)
    return torch.minimum(rows, cols)


def decode_tiled(decode, latents: torch.Tensor) -> torch.Tensor:
    """`decode` (latents (B, C, T, h, w) -> video (B, 3, F, s*h, s*w), unclamped) tile by tile (MORA_DECODES,
    tiled), blended into the whole frame and clamped to [-1, 1]; differentiable."""
    H, W = latents.shape[-2:]
    values = weight = 0.0
    for h in tile_starts(H, TILE[0], TILE_STRIDE[0]):
        for w in tile_starts(W, TILE[1], TILE_STRIDE[1]):
            tile = decode(latents[..., h:h + TILE[0], w:w + TILE[1]])
            scale = tile.shape[-1] // latents[..., w:w + TILE[1]].shape[-1]
            border = ((TILE[0] - TILE_STRIDE[0]) * scale, (TILE[1] - TILE_STRIDE[1]) * scale)
            mask = _ramp_mask(*tile.shape[-2:], (h > 0, h + TILE[0] < H, w > 0, w + TILE[1] < W), border)
            mask = mask.to(tile.device, tile.dtype)
            pad = (w * scale, W * scale - w * scale - tile.shape[-1], h * scale, H * scale - h * scale - tile.shape[-2])
            values = values + F.pad(tile * mask, pad)
            weight = weight + F.pad(mask.expand_as(tile[:, :1]), pad)
    return (values / weight).clamp(-1, 1)


def decode_window(vae, latents: torch.Tensor, start: int, window: int = _WINDOW, drop: int = _DROP, checkpoint: bool = True,
                  store_last: int = 0, frame_range: str = "matched", tiling: str = "whole"):
    """Decode normalised latents[:, :, start:start+window] alone; return the kept frames (B, F, 3, H, W), in
    [0, 1] (frame_range matched) or [-1, 1] (authors: MORA_FRAME_RANGES); `tiling`: MORA_DECODES.
    checkpoint / store_last: `decode_latents_differentiable`'s."""
    from ..models.vae_decode import decode_latents_differentiable, to_unit_frames

    _check_window(window, drop)
    if frame_range not in MORA_FRAME_RANGES:
        raise SmraboothError(f"--mora-frame-range {frame_range!r}: choose {', '.join(MORA_FRAME_RANGES)}")
    if tiling not in MORA_DECODES:
        raise SmraboothError(f"--mora-decode {tiling!r}: choose {', '.join(MORA_DECODES)}")
    if start < 0 or start + window > latents.shape[2]:
        raise InternalError(f"MoRA window [{start}, {start + window}) is outside {latents.shape[2]} latent frames.")

    def whole(z, clamp=True):
        return decode_latents_differentiable(vae, z, checkpoint=checkpoint, clamp=clamp, store_last=store_last)

    z = latents[:, :, start : start + window]
    # tiles unclamped, their blend clamped (as theirs: a tile's value past 1 still pulls its neighbour's)
    video = decode_tiled(lambda t: whole(t, clamp=False), z) if tiling == "tiled" else whole(z)
    kept = video[:, :, drop:]
    return to_unit_frames(kept) if frame_range == "matched" else kept.permute(0, 2, 1, 3, 4)
