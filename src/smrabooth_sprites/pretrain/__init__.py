"""Pretraining of the SMRA-Sprites models (docs/sprites-models.md), one module per stage:

    vae      AutoencoderKLWan reconstructs clips; latent mean/std measured into its config
    dit      WanTransformer3DModel, text-to-video flow matching on the trained VAE's latents
    dinov2   Dinov2Model, patch and CLS features that carry shape, colour and texture
    searaft  SEA-RAFT, optical flow against the world's exact flow
    assemble every stage's weights into one bundle (bundle.py)

`run_stage(StageConfig(stage=..., out=...), resume=...)` trains one stage; scripts/train_sprites.py is
the command line.
"""

from __future__ import annotations

from .assemble import assemble_bundle
from .common import STAGES, StageConfig, read_log
from .common import run_stage as _run_stage


def stage_builder(stage: str):
    from .dinov2 import build_dinov2_stage
    from .dit import build_dit_stage
    from .searaft import build_searaft_stage
    from .vae import build_vae_stage

    return {"vae": build_vae_stage, "dit": build_dit_stage, "dinov2": build_dinov2_stage,
            "searaft": build_searaft_stage}[stage]


def run_stage(cfg: StageConfig, resume: bool = False, t0: float | None = None) -> dict:
    """Train one stage until cfg.steps or cfg.minutes pass; checkpoint; return its summary."""
    cfg = cfg.resolved()
    return _run_stage(cfg, stage_builder(cfg.stage), resume=resume, t0=t0)


__all__ = ["STAGES", "StageConfig", "assemble_bundle", "read_log", "run_stage", "stage_builder"]
