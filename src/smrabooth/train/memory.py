"""--memory low|auto|max: the trainers' speed settings picked from the device and its free memory.

The speed settings change how a step is computed, not what it computes (the same LoRA: gradient checkpointing
and MoRA's decode checkpointing recompute the same values; compile and CUDA graphs change the float rounding
only, 0.12% after 40 steps, benchmarks/README.md). Each trainer has tiers, fastest first, each with the peak
memory measured at the 1.3B size on the shapes the benchmarks name (benchmarks/README.md, 2026-11-24/28):

- low: today's low-memory settings (gradient checkpointing; MoRA's decode checkpointed per block);
- auto (the default): on a GPU the fastest tier whose estimated extra memory (the measured peak above the
  model's weights, scaled by this run's tokens and the model's width x depth) fits in 90% of the free memory;
  on a CPU no checkpointing and no compilation (recomputing only slows a CPU);
- max: the fastest tier, whatever the memory.

A setting the user gave (a CLI flag, or a value other than its default from Python) is never changed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..logs import get_logger
from ..validation import check_choice

log = get_logger(__name__)

MEMORY_MODES = ("low", "auto", "max")
MEMORY_HELP = ("speed against memory (train/memory.py): auto = the fastest settings that fit the free GPU memory; "
               "low = the least memory; max = the fastest. A speed flag you give is kept")
GIB = 2**30


@dataclass(frozen=True)
class Tier:
    name: str
    settings: dict
    peak_gib: float  # measured at the reference shapes (REFERENCE), model weights included


# Wan2.1 1.3B (30 blocks, width 1536), bf16 weights: 2.9 GiB with the VAE
REFERENCE = {"blocks": 30, "width": 1536, "weights_gib": 2.9,
             "subject_tokens": 1024,  # one 512x512 image
             "motion_tokens": 13 * 36 * 20}  # 49 frames at 576x320
TIERS = {
    "subject": [
        Tier("cuda-graphs", {"gradient_checkpointing": False, "compile": True, "cuda_graphs": True}, 7.3),
        Tier("compile", {"gradient_checkpointing": False, "compile": True}, 6.8),
        Tier("low", {"gradient_checkpointing": True}, 6.8),
    ],
    "motion": [
        Tier("store-4", {"gradient_checkpointing": False, "compile": True, "vae_checkpointing": "frame",
                         "vae_store_frames": 4}, 68.2),
        Tier("store-3", {"gradient_checkpointing": False, "compile": True, "vae_checkpointing": "frame",
                         "vae_store_frames": 3}, 61.1),
        Tier("frame", {"gradient_checkpointing": False, "compile": True, "vae_checkpointing": "frame"}, 49.5),
        Tier("low", {"gradient_checkpointing": True, "vae_checkpointing": "block"}, 20.4),
    ],
}
CPU_SETTINGS = {"gradient_checkpointing": False}


@dataclass(frozen=True)
class Geometry:
    """Pixels per token: the VAE's compression (Wan2.1 and Wan2.2 A14B: 8x, 4 frames per latent; Wan2.2 TI2V-5B:
    16x) times the DiT's patch (1, 2, 2)."""
    spatial: int = 8
    temporal: int = 4
    patch: tuple[int, int, int] = (1, 2, 2)

    @classmethod
    def of(cls, transformer, vae=None) -> Geometry:
        vae_config = getattr(vae, "config", None)
        return cls(getattr(vae_config, "scale_factor_spatial", cls.spatial),
                   getattr(vae_config, "scale_factor_temporal", cls.temporal),
                   tuple(getattr(transformer.config, "patch_size", cls.patch)))


def run_tokens(kind: str, cfg, geometry: Geometry = Geometry()) -> int:
    """The DiT's tokens per sample of this run."""
    g = geometry
    rows, cols = g.spatial * g.patch[1], g.spatial * g.patch[2]
    if kind == "subject":
        return (cfg.resolution // rows) * (cfg.resolution // cols)
    return (1 + (cfg.frames - 1) // g.temporal) // g.patch[0] * (cfg.height // rows) * (cfg.width // cols)


def extra_gib(tier: Tier, kind: str, tokens: int, blocks: int, width: int, decode_scale: float = 1.0) -> float:
    """The tier's memory above the model's weights, scaled from the reference run to this one (`decode_scale`:
    `mora_decode_scale`'s, for a motion run)."""
    scale = tokens / REFERENCE[f"{kind}_tokens"] * (blocks * width) / (REFERENCE["blocks"] * REFERENCE["width"])
    return (tier.peak_gib - REFERENCE["weights_gib"]) * scale * decode_scale


# The motion tiers were measured with MoRA decoding its window whole, in an fp32 VAE. The tiled decode (the
# authors') decodes every overlap twice; in a bf16 VAE it peaked at 72.4 GiB in tier store-3 (official, H100,
# 2026-12-05): extra 69.5 GiB against store-3's 58.2, 1.28x what its decoded pixels and the VAE's bytes alone
# predict (1.87 x 1/2 at 576x320).
TILED_MARGIN = 1.28


def mora_decode_scale(cfg, vae_bytes: int, spatial: int = Geometry.spatial) -> float:
    """How much more (or less) memory this run's MoRA decode takes than the tiers' reference: its decoded pixels
    (tiles overlap) x the VAE's bytes per value against fp32; `spatial`: the VAE's compression (`Geometry`)."""
    if not getattr(cfg, "use_mora", False):
        return 1.0
    from ..align.mora import tiled_pixels

    pixels = tiled_pixels(cfg.height // spatial, cfg.width // spatial) * TILED_MARGIN if cfg.mora_decode == "tiled" else 1.0
    return pixels * vae_bytes / 4


def choose(kind: str, memory: str, device: torch.device, free_gib: float | None, tokens: int, blocks: int,
           width: int, validating: bool = False, decode_scale: float = 1.0) -> tuple[dict, str]:
    """(settings, why) for `kind` (subject | motion) under `memory`."""
    check_choice("--memory", memory, MEMORY_MODES)
    tiers = [t for t in TIERS[kind] if not (validating and t.settings.get("cuda_graphs"))]  # graphs + validation: no
    if memory == "low":
        return dict(tiers[-1].settings), "--memory low"
    if device.type != "cuda":
        return dict(CPU_SETTINGS), f"--memory {memory} on {device.type}: no checkpointing, no compilation"
    if memory == "max":
        return dict(tiers[0].settings), "--memory max"
    for tier in tiers:
        need = extra_gib(tier, kind, tokens, blocks, width, decode_scale)
        if free_gib is not None and need <= 0.9 * free_gib:
            return dict(tier.settings), (f"--memory auto: {free_gib:.1f} GiB free, tier '{tier.name}' needs about "
                                         f"{need:.1f} GiB more")
    return dict(tiers[-1].settings), f"--memory auto: {free_gib:.1f} GiB free, the low-memory tier"


def apply_memory_policy(cfg, kind: str, transformer, device: torch.device, explicit: set[str] | None = None,
                        vae_bytes: int = 4, vae=None):
    """`cfg` with the speed settings `cfg.memory` picks, except those the user gave: in `explicit` (the CLI's
    flags) or, from Python, set to other than the field's default. Logs what it picked. `vae_bytes`: per value
    of the VAE while training (MoRA's decode); `vae`: its compression (default Wan2.1's)."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    free = torch.cuda.mem_get_info(device)[0] / GIB if device.type == "cuda" else None
    geometry = Geometry.of(transformer, vae)
    settings, why = choose(kind, cfg.memory, device, free, run_tokens(kind, cfg, geometry),
                           transformer.config.num_layers,
                           transformer.config.num_attention_heads * transformer.config.attention_head_dim,
                           validating=bool(cfg.validate_every),
                           decode_scale=mora_decode_scale(cfg, vae_bytes, geometry.spatial) if kind == "motion"
                           else 1.0)

    def given(name):
        return name in (explicit or ()) or getattr(cfg, name) != fields[name].default

    picked = {k: v for k, v in settings.items() if k in fields and not given(k)}
    if picked:  # on a GPU a warning line, so that every run says how it computes (config.yaml records it)
        shown = " ".join(_flag(k, v) for k, v in picked.items())
        (log.warning if device.type == "cuda" else log.info)("%s: %s", why, shown)
    cfg = dataclasses.replace(cfg, **picked)
    cfg.compile = cfg.compile or getattr(cfg, "cuda_graphs", False)
    return cfg


def _flag(name: str, value) -> str:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return f"{flag} {value}"


__all__ = ["MEMORY_HELP", "MEMORY_MODES", "TIERS", "Geometry", "apply_memory_policy", "choose", "extra_gib",
           "mora_decode_scale", "run_tokens"]
