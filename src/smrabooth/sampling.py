"""Text-to-video sampling with subject and motion LoRAs (docs/method.md stage 3).

The loop is WanPipeline's Wan2.1 loop (same prompt encoding, latent noise, CFG and decoding, so with
no LoRA and the model's scheduler it gives stock `WanPipeline` frames), with one addition: before
each step the LoRA scales are set from an `InjectionSchedule`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .errors import SmraboothError
from .lora.files import LoraWeights
from .lora.inject import (
    PAPER_T_POINT,
    InjectionSchedule,
    load_loras_into_transformer,
    set_lora_scales,
    shifted_linear_sigmas,
    t_point_for_sigmas,
)
from .lora.targets import MOTION_SPARSE_TYPES, SUBJECT_SPARSE_TYPES, parse_layer_types

SCHEDULERS = ("euler", "unipc")
INJECTIONS = ("sparse", "dense")


@dataclass
class GenerateConfig:
    """Every setting of one generation. Defaults are stock WanPipeline's; see PRESETS['paper']."""

    prompt: str = ""
    negative_prompt: str | None = None
    frames: int = 81
    height: int = 480
    width: int = 832
    steps: int = 50
    guidance: float = 5.0
    seed: int = 0
    scheduler: str | None = None  # None: the scheduler saved with the model
    shift: float | None = None  # None: the scheduler's own (euler: 5.0)
    t_point: int | None = None  # None: the step whose sigma is closest to the paper's step `paper_t_point` of 50
    paper_t_point: int = PAPER_T_POINT  # the paper's T_point (its 50-step numbering) that t_point=None maps to
    subject_scale_early: float = 0.5
    subject_scale: float = 1.0
    motion_scale: float = 1.0
    injection: str = "sparse"
    subject_layers: tuple[str, ...] = SUBJECT_SPARSE_TYPES
    motion_layers: tuple[str, ...] = MOTION_SPARSE_TYPES
    fps: float = 16.0
    max_sequence_length: int = 512

    def validate(self) -> "GenerateConfig":
        if self.frames < 1 or (self.frames - 1) % 4:
            lo = max(1, (self.frames - 1) // 4 * 4 + 1)
            raise SmraboothError(
                f"--frames {self.frames} is not 4k+1 (Wan's VAE packs 4 frames per latent): use {lo} or {lo + 4}"
            )
        for name in ("height", "width"):
            v = getattr(self, name)
            if v < 16 or v % 16:
                raise SmraboothError(f"--{name} {v} is not a multiple of 16: use {max(16, round(v / 16) * 16)}")
        if self.steps < 1:
            raise SmraboothError(f"--steps must be at least 1, got {self.steps}")
        if self.t_point is not None and not 0 <= self.t_point <= self.steps:
            raise SmraboothError(f"--t-point {self.t_point} is outside the step range 0..{self.steps}")
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise SmraboothError(f"--scheduler {self.scheduler!r}: choose from {', '.join(SCHEDULERS)}")
        if self.injection not in INJECTIONS:
            raise SmraboothError(f"--injection {self.injection!r}: choose from {', '.join(INJECTIONS)}")
        self.subject_layers = parse_layer_types(self.subject_layers)
        self.motion_layers = parse_layer_types(self.motion_layers)
        return self


# The paper's inference settings (docs/method.md): 49 frames at 832x480, 50 flow-matching Euler steps with
# shift 5, CFG 5, subject scale 0.5 before T_point 15 and 1.0 after, motion 1.0, 15 fps.
PRESETS: dict[str, dict] = {
    "paper": dict(frames=49, height=480, width=832, steps=50, guidance=5.0, scheduler="euler", shift=5.0,
                  subject_scale_early=0.5, subject_scale=1.0, motion_scale=1.0, injection="sparse", fps=15.0),
}


def make_scheduler(pipe, name: str | None, shift: float | None):
    """A fresh scheduler: the model's own (name None), DiffSynth-style Euler, or Wan's UniPC."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    if name is None:
        sched = type(pipe.scheduler).from_config(pipe.scheduler.config)
        if shift is not None:
            key = "flow_shift" if "flow_shift" in sched.config else "shift"
            sched = type(sched).from_config(sched.config, **{key: shift})
        return sched
    if name == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0 if shift is None else shift)
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                                   flow_shift=3.0 if shift is None else shift)


def set_scheduler_steps(scheduler, steps: int, device) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        # linspace(1, 0, S+1)[:-1]; the scheduler applies its shift and appends sigma = 0.
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1].tolist(), device=device)
    else:
        scheduler.set_timesteps(steps, device=device)


def step_sigmas(scheduler, steps: int) -> list[float]:
    """The noise level at the start of each step of the last `set_scheduler_steps`."""
    return [float(s) for s in scheduler.sigmas[:steps]]


def attach_loras(pipe, config: GenerateConfig, subject: LoraWeights | None, motion: LoraWeights | None,
                 paths: dict[str, str] | None = None) -> list:
    """Load the LoRAs into `pipe.transformer` (sparse or dense); returns the LoRA layers."""
    paths = paths or {}
    sparse = config.injection == "sparse"
    loras = {}
    if subject is not None:
        loras["subject"] = (subject, config.subject_layers if sparse else None)
    if motion is not None:
        loras["motion"] = (motion, config.motion_layers if sparse else None)
    if not loras:
        return []
    return load_loras_into_transformer(pipe.transformer, loras, paths)


def detach_loras(pipe) -> None:
    names = list(getattr(pipe.transformer, "peft_config", {}) or {})
    if names:
        pipe.transformer.delete_adapters(names)


def schedule_for(config: GenerateConfig, sigmas: list[float]) -> InjectionSchedule:
    if config.injection == "dense":
        return InjectionSchedule.constant(config.subject_scale, config.motion_scale)
    t_point = config.t_point if config.t_point is not None else t_point_for_sigmas(sigmas, config.paper_t_point)
    return InjectionSchedule(t_point, config.subject_scale_early, config.subject_scale, config.motion_scale)


@dataclass
class SampleResult:
    frames: np.ndarray  # (F, H, W, 3) uint8
    schedule: InjectionSchedule
    sigmas: list[float] = field(default_factory=list)


@torch.no_grad()
def sample_video(
    pipe,
    config: GenerateConfig,
    lora_layers: list | None = None,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
    output_type: str = "np",
    prompt_embeds: torch.Tensor | None = None,
    negative_embeds: torch.Tensor | None = None,
) -> SampleResult:
    """Denoise one video; `lora_layers` (from `attach_loras`) get their scales set every step.

    Precomputed `prompt_embeds`/`negative_embeds` skip the text encoder (trainers free it early).
    """
    from tqdm.auto import tqdm

    config = config.validate()
    device = pipe._execution_device
    transformer = pipe.transformer
    do_cfg = config.guidance > 1.0

    if prompt_embeds is None:
        prompt_embeds, negative_embeds = pipe.encode_prompt(
            prompt=config.prompt, negative_prompt=config.negative_prompt, do_classifier_free_guidance=do_cfg,
            num_videos_per_prompt=1, max_sequence_length=config.max_sequence_length, device=device,
        )
    prompt_embeds = prompt_embeds.to(transformer.dtype)
    if negative_embeds is not None:
        negative_embeds = negative_embeds.to(transformer.dtype)

    scheduler = make_scheduler(pipe, config.scheduler, config.shift)
    set_scheduler_steps(scheduler, config.steps, device)
    sigmas = step_sigmas(scheduler, config.steps)
    schedule = schedule_for(config, sigmas)

    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    latents = pipe.prepare_latents(1, transformer.config.in_channels, config.height, config.width, config.frames,
                                   torch.float32, device, generator)
    scheduler.set_begin_index(0)
    for i, t in enumerate(tqdm(scheduler.timesteps, desc="denoising", disable=not progress)):
        scales = schedule.scales_at(i)
        if lora_layers:
            set_lora_scales(lora_layers, scales)
        if on_step is not None:
            on_step(i, scales)
        model_input = latents.to(transformer.dtype)
        timestep = t.expand(latents.shape[0])
        velocity = transformer(model_input, timestep, prompt_embeds, return_dict=False)[0]
        if do_cfg:
            uncond = transformer(model_input, timestep, negative_embeds, return_dict=False)[0]
            velocity = uncond + config.guidance * (velocity - uncond)
        latents = scheduler.step(velocity, t, latents, return_dict=False)[0]

    if output_type == "latent":
        return SampleResult(latents, schedule, sigmas)
    frames = decode_latents(pipe, latents)
    return SampleResult((np.clip(frames, 0, 1) * 255).round().astype(np.uint8), schedule, sigmas)


def decode_latents(pipe, latents: torch.Tensor) -> np.ndarray:
    """Normalised latents -> float frames (F, H, W, 3) in [0, 1], exactly as WanPipeline decodes."""
    from .models.vae_decode import denormalize_latents

    vae = pipe.vae
    latents = latents.to(vae.device, vae.dtype)
    video = vae.decode(denormalize_latents(vae, latents), return_dict=False)[0]
    return pipe.video_processor.postprocess_video(video, output_type="np")[0]


def generate(
    pipe,
    config: GenerateConfig,
    subject_lora: LoraWeights | None = None,
    motion_lora: LoraWeights | None = None,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
    lora_paths: dict[str, str] | None = None,
) -> SampleResult:
    """Python API of `smrabooth generate`: attach the LoRAs, sample, and detach them again."""
    config = config.validate()
    layers = attach_loras(pipe, config, subject_lora, motion_lora, lora_paths)
    try:
        return sample_video(pipe, config, layers, progress=progress, on_step=on_step)
    finally:
        detach_loras(pipe)


__all__ = [
    "GenerateConfig",
    "PRESETS",
    "SampleResult",
    "attach_loras",
    "decode_latents",
    "detach_loras",
    "generate",
    "make_scheduler",
    "sample_video",
    "shifted_linear_sigmas",
]
