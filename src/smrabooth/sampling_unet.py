"""Text-to-video sampling on ZeroScope with the U-Net variant's subject (spatial) and motion (temporal) LoRAs.

The loop is stock `TextToVideoSDPipeline.__call__` (its prompt encoding, noise, scheduler, CFG and
per-frame decoding), so with no LoRA the frames are the stock pipeline's. The LoRA scales follow the
DiT sampler's `InjectionSchedule`: the pipeline's per-step callback sets the next step's scales.

What applies from the DiT sampler: the timing (subject scale `subject_scale_early` before `t_point`,
`subject_scale` from it on, motion `motion_scale` throughout; `--injection dense` = constant scales).
The layer split (`--subject-layers/--motion-layers`) does not: the two LoRAs already sit in different
layers (spatial vs temporal transformers). `t_point` None maps the paper's step 15 of its 50-step
flow sampler by noise level: the step whose signal-to-noise ratio abar/(1-abar) is closest to that
step's (1-sigma)^2/sigma^2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .errors import SmraboothError
from .lora.inject import set_lora_scales
from .lora.unet import UnetLora, load_unet_loras, remove_adapters
from .recipes import PAPER, UNET
from .sampling import INJECTIONS, SampleResult
from .schedules import InjectionSchedule, t_point_sigma


@dataclass
class UnetGenerateConfig:
    """Every setting of one ZeroScope generation. Defaults: stock TextToVideoSDPipeline at ZeroScope's size."""

    prompt: str = ""
    negative_prompt: str | None = None
    frames: int = UNET.frames
    height: int = UNET.height
    width: int = UNET.width
    steps: int = PAPER.sampler.steps
    guidance: float = UNET.guidance
    seed: int = 0
    t_point: int | None = None
    paper_t_point: int = PAPER.sampler.t_point  # of the paper's 50-step flow sampler
    subject_scale_early: float = PAPER.sampler.subject_scale_early
    subject_scale: float = PAPER.sampler.subject_scale
    motion_scale: float = PAPER.sampler.motion_scale
    injection: str = "sparse"
    fps: float = UNET.fps

    def validate(self) -> UnetGenerateConfig:
        if self.frames < 1:
            raise SmraboothError(f"--frames must be at least 1, got {self.frames}")
        for name in ("height", "width"):
            v = getattr(self, name)
            if v < 8 or v % 8:
                raise SmraboothError(f"--{name} {v} is not a multiple of 8: use {max(8, round(v / 8) * 8)}")
        if self.steps < 1:
            raise SmraboothError(f"--steps must be at least 1, got {self.steps}")
        if self.t_point is not None and not 0 <= self.t_point <= self.steps:
            raise SmraboothError(f"--t-point {self.t_point} is outside the step range 0..{self.steps}")
        if self.injection not in INJECTIONS:
            raise SmraboothError(f"--injection {self.injection!r}: choose from {', '.join(INJECTIONS)}")
        return self


def t_point_for_timesteps(timesteps, alphas_cumprod: torch.Tensor, paper_step: int = PAPER.sampler.t_point) -> int:
    """The step whose SNR abar/(1-abar) is closest (in log) to the paper's flow step `paper_step`'s
    (1-sigma)^2/sigma^2: the same noise level in the other parameterisation."""
    sigma = t_point_sigma(paper_step)
    target = np.log((1 - sigma) ** 2 / sigma**2)
    abar = alphas_cumprod[torch.as_tensor(timesteps).long().cpu()].double().numpy()
    return int(np.argmin(np.abs(np.log(abar / (1 - abar)) - target)))


def schedule_for(config: UnetGenerateConfig, scheduler) -> InjectionSchedule:
    if config.injection == "dense":
        return InjectionSchedule.constant(config.subject_scale, config.motion_scale)
    t_point = config.t_point
    if t_point is None:
        t_point = t_point_for_timesteps(scheduler.timesteps, scheduler.alphas_cumprod, config.paper_t_point)
    return InjectionSchedule(t_point, config.subject_scale_early, config.subject_scale, config.motion_scale)


@torch.no_grad()
def generate_unet(
    pipe,
    config: UnetGenerateConfig,
    subject_lora: UnetLora | None = None,
    motion_lora: UnetLora | None = None,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
    lora_paths: dict[str, str] | None = None,
) -> SampleResult:
    """`smrabooth generate` on a ZeroScope pipeline: inject the LoRAs, run the stock pipeline with the
    scale schedule, take the LoRAs out again (the U-Net is returned as it was)."""
    config = config.validate()
    loras = {n: w for n, w in (("subject", subject_lora), ("motion", motion_lora)) if w is not None}
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(config.steps)
    schedule = schedule_for(config, scheduler)
    layers = load_unet_loras(pipe.unet, loras, lora_paths) if loras else []

    def set_step(i: int) -> None:
        scales = schedule.scales_at(i)
        if layers:
            set_lora_scales(layers, {n: s for n, s in scales.items() if n in loras})
        if on_step is not None:
            on_step(i, scales)

    try:
        set_step(0)
        pipe.set_progress_bar_config(disable=not progress)
        frames = pipe(
            config.prompt, negative_prompt=config.negative_prompt, num_frames=config.frames, height=config.height,
            width=config.width, num_inference_steps=config.steps, guidance_scale=config.guidance,
            generator=torch.Generator("cpu").manual_seed(config.seed), output_type="np",
            callback=lambda i, t, latents: set_step(i + 1) if i + 1 < config.steps else None, callback_steps=1,
        ).frames[0]
    finally:
        if layers:
            remove_adapters(pipe.unet)
    frames = (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
    return SampleResult(frames, schedule, [float(t) for t in scheduler.timesteps])
