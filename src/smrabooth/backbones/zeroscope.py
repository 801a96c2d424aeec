"""ZeroScope / ModelScope T2V (diffusers `TextToVideoSDPipeline`): SMRABooth's U-Net variant (supplementary 5).

- denoiser: one `UNet3DConditionModel` predicting the noise (epsilon) on a DDPM schedule:
  z_t = sqrt(abar) z0 + sqrt(1 - abar) eps;  z0_hat = (z_t - sqrt(1 - abar) eps_theta) / sqrt(abar).
- latents: Stable Diffusion's `AutoencoderKL` on each frame alone (4 channels, 8x, no temporal compression).
- captions: OpenCLIP ViT-H (77 tokens).
- LoRA: the subject LoRA in the spatial transformers, the motion LoRA in the temporal ones (lora/unet.py);
  the two never share a layer, so generation applies the injection's timing only.
- the sampler is stock `TextToVideoSDPipeline.__call__` with the per-step LoRA scales set from its callback:
  with no LoRA its frames are the stock pipeline's.
- the trainers are train/unet.py's (RAA for SuRA, epsilon MoRA), on the run machinery the Wan trainers use.

The model's files are read by models/unet.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SmraboothError
from ..recipes import PAPER, UNET
from ..schedules import InjectionSchedule, t_point_sigma
from .base import MAIN, Backbone


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
    reference_t_point: int = PAPER.sampler.t_point  # a step of the paper's 50-step flow sampler, mapped by SNR
    subject_scale_early: float = PAPER.sampler.subject_scale_early
    subject_scale: float = PAPER.sampler.subject_scale
    motion_scale: float = PAPER.sampler.motion_scale
    injection: str = "sparse"
    fps: float = UNET.fps

    def validate(self) -> UnetGenerateConfig:
        from ..sampling import INJECTIONS, MAX_SCALE
        from ..validation import check_multiple, check_number

        check_number("--frames", self.frames, 1, 1000, integer=True)
        for name in ("height", "width"):
            check_multiple(f"--{name}", getattr(self, name), 8, 8, 2048)
        check_number("--steps", self.steps, 1, 1000, integer=True)
        check_number("--guidance", self.guidance, 0, 100)
        check_number("--seed", self.seed, 0, 2**63 - 1, integer=True)
        check_number("--t-point", self.t_point, 0, self.steps, integer=True, optional=True)
        check_number("--reference-t-point", self.reference_t_point, 0, PAPER.sampler.steps - 1, integer=True)
        for name in ("subject_scale_early", "subject_scale", "motion_scale"):
            check_number("--" + name.replace("_", "-"), getattr(self, name), -MAX_SCALE, MAX_SCALE)
        check_number("--fps", self.fps, 0, 240, low_open=True)
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
        t_point = t_point_for_timesteps(scheduler.timesteps, scheduler.alphas_cumprod, config.reference_t_point)
    return InjectionSchedule(t_point, config.subject_scale_early, config.subject_scale, config.motion_scale)


@torch.no_grad()
def generate_unet(pipe, config: UnetGenerateConfig, subject_lora=None, motion_lora=None, progress: bool = True,
                  on_step: Callable[[int, dict], None] | None = None, lora_paths: dict[str, str] | None = None):
    """`smrabooth generate` on a ZeroScope pipeline: inject the LoRAs, run the stock pipeline with the
    scale schedule, take the LoRAs out again (the U-Net is returned as it was)."""
    from ..lora.inject import set_lora_scales
    from ..lora.unet import load_unet_loras, remove_adapters
    from ..sampling import SampleResult

    config = config.validate()
    loras = {n: w for n, w in (("subject", subject_lora), ("motion", motion_lora)) if w is not None}
    for name, weights in loras.items():
        if isinstance(weights, (list, tuple)):  # the CLI passes a list of files per LoRA
            if len(weights) != 1:
                raise SmraboothError(f"--{name}-lora: ZeroScope takes one file, got {len(weights)}")
            loras[name] = weights[0]
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


class ZeroScope(Backbone):
    name = "zeroscope"
    title = "ZeroScope (U-Net)"
    family = "zeroscope"
    family_title = "ZeroScope (U-Net)"
    pipeline_class = "TextToVideoSDPipeline"
    example = "cerspense/zeroscope_v2_576w"
    components = ("text_encoder", "vae", "unet")

    # ------------------------------------------------------------ loading
    def matches(self, index: dict) -> bool:
        return index.get("_class_name") == self.pipeline_class

    def matches_hub_id(self, model: str) -> bool:
        name = model.lower()
        return "zeroscope" in name or "text-to-video-ms" in name

    def check_folder(self, path) -> None:
        from ..models.unet import check_zeroscope_model_dir

        check_zeroscope_model_dir(path)

    def load(self, model, dtype="auto", vae_dtype="fp32", device=None, local_files_only=None,
             text_encoder_device=None):
        from ..models.unet import load_zeroscope_pipeline

        return load_zeroscope_pipeline(model, dtype=dtype, vae_dtype=vae_dtype, device=device,
                                       local_files_only=local_files_only)

    def build_tiny(self, seed: int = 0):
        from ..models.unet import TinyZeroScopeConfig, build_tiny_zeroscope_pipeline

        return build_tiny_zeroscope_pipeline(TinyZeroScopeConfig(seed=seed))

    # ------------------------------------------------------------ denoiser and noise
    def denoisers(self, pipe) -> dict[str, torch.nn.Module]:
        return {MAIN: pipe.unet}

    def add_noise(self, z0, noise, abar):
        from ..train.unet import add_noise

        return add_noise(z0, noise, abar)

    def training_target(self, z0, noise, abar):
        return noise

    def one_step_z0(self, z_t, prediction, abar):
        from ..train.unet import epsilon_z0

        return epsilon_z0(z_t, prediction, abar)

    # ------------------------------------------------------------ latents, captions, SuRA's hook point
    def encode_image(self, pipe, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) in [0, 1] -> the scaled SD latent of a one-frame video (4, 1, h, w)."""
        return self.encode_video(pipe, image[None])

    @torch.no_grad()
    def encode_video(self, pipe, frames: torch.Tensor) -> torch.Tensor:
        """(F, 3, H, W) in [0, 1] -> scaled SD latents (4, F, h, w), each frame encoded on its own."""
        vae = pipe.vae
        x = (frames * 2 - 1).to(vae.device, vae.dtype)
        latent = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor  # (F, 4, h, w)
        return latent.permute(1, 0, 2, 3).float().cpu()

    def decode_window(self, vae, latents: torch.Tensor, start: int, window: int, drop: int = 0,
                      checkpoint="frame", store_last: int = 0) -> torch.Tensor:
        """MoRA's differentiable decode of frames start..start+window of scaled latents (B, 4, F, h, w): each frame
        alone (no temporal compression, nothing to drop), recomputed in backward with `checkpoint` "frame"."""
        from ..train.unet import decode_frames

        return decode_frames(vae, latents[:, :, start : start + window], checkpoint == "frame")

    def encode_captions(self, pipe, texts, model_id: str, cache_dir) -> dict[str, torch.Tensor]:
        """Caption -> CLIP text embedding (1, 77, D), cached by the text encoder's and tokenizer's files."""
        from ..data.cache import cache_key, cached, model_digest

        out = {}
        model = model_digest(model_id, ("text_encoder", "tokenizer"), cache_dir)
        for text in dict.fromkeys(texts):
            def compute(text=text):
                emb, _ = pipe.encode_prompt(text, pipe._execution_device, 1, False)
                return {"embeds": emb.float()}

            out[text] = cached(cache_dir, cache_key(kind="prompt-clip", model=model, text=text), compute)["embeds"]
        return out

    def sura_module(self, denoiser, where: str):
        """'mid', 'down.2', 'up.1': the U-Net block whose output RAA aligns, and its width."""
        from ..train.unet import block_of

        return block_of(denoiser, where)

    # ------------------------------------------------------------ LoRA
    @property
    def layer_types(self):
        from ..lora.unet import UNET_LAYER_TYPES

        return UNET_LAYER_TYPES

    def read_lora(self, path, flag: str = "LoRA file"):
        from ..lora.unet import load_unet_lora
        from ..validation import check_readable

        check_readable(flag, path, "file")
        return load_unet_lora(path)

    def describe_lora(self, path) -> str:
        from ..lora.unet import describe_unet_lora, load_unet_lora

        return describe_unet_lora(load_unet_lora(path))

    def lora_file_is_mine(self, path) -> bool:
        from ..lora.unet import is_unet_lora_file

        return is_unet_lora_file(path)

    # ------------------------------------------------------------ generation
    generate_config_class = UnetGenerateConfig

    def generate_defaults(self, preset: str | None = None):
        if preset:
            raise SmraboothError(f"--preset {preset} is a Wan recipe's sampler; a ZeroScope model takes no preset")
        return UnetGenerateConfig()

    def generate(self, pipe, config, subject=None, motion=None, progress=True, on_step=None, lora_paths=None):
        return generate_unet(pipe, config, subject, motion, progress, on_step, lora_paths)

    # ------------------------------------------------------------ training
    def train_config_class(self, kind: str) -> type:
        from ..train.unet import UnetMotionConfig, UnetSubjectConfig

        return UnetSubjectConfig if kind == "subject" else UnetMotionConfig

    def trainer(self, kind: str):
        from ..train.unet import train_unet_motion, train_unet_subject

        return train_unet_subject if kind == "subject" else train_unet_motion

    def final_names(self, kind: str, cfg) -> tuple[str, ...]:
        return (f"{kind}_lora.safetensors",)


ZEROSCOPE = ZeroScope()

__all__ = ["ZEROSCOPE", "UnetGenerateConfig", "ZeroScope", "generate_unet", "schedule_for", "t_point_for_timesteps"]
