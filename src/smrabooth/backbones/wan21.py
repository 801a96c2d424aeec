"""Wan text-to-video (diffusers `WanPipeline`): Wan2.1 here, the Wan2.2 forms in wan22.py.

Everything Wan does follows the pipeline's own configuration, as `WanPipeline.__call__` does, so one
implementation serves Wan2.1 (1.3B, 14B) and both Wan2.2 forms:

- denoisers: `transformer`, and with `boundary_ratio` set also `transformer_2`. Then `transformer` is the
  HIGH-noise expert, used for every timestep t >= boundary_ratio x 1000, and `transformer_2` the LOW-noise
  expert, used below it (the stock pipeline's switch, on the scheduler's own timesteps).
- flow matching: z_t = (1 - sigma) z0 + sigma eps, the model predicts the velocity eps - z0 at timestep
  1000 sigma; z0_hat = z_t - sigma u.
- `expand_timesteps` (Wan2.2 TI2V-5B): the timestep is given per token, (B, frames x h/2 x w/2), as the
  stock pipeline builds it.
- latents: the VAE's own (16 channels, 8x; or Wan2.2's 48 channels, 16x), normalised by its
  latents_mean/latents_std; MoRA's differentiable window decode is models/vae_decode.py, which runs both VAEs.
- the sampler (`sample_video`) is WanPipeline's loop with the per-step LoRA scales of sparse injection; with
  no LoRA and the model's scheduler it gives stock `WanPipeline` frames (tests/test_backbones.py).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import SmraboothError
from .base import EXPERTS, MAIN, Backbone, check_components, listed, read_model_index

NUM_TRAIN_TIMESTEPS = 1000  # Wan's schedulers; timestep = 1000 sigma


class Wan21(Backbone):
    name = "wan2.1"
    title = "Wan2.1"
    family = "wan"
    family_title = "Wan"
    pipeline_class = "WanPipeline"
    example = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    components = ("text_encoder", "vae", "transformer", "transformer_2")
    size_multiple = 16  # pixels: the VAE's 8x times the 2x2 patch

    # ------------------------------------------------------------ loading
    def matches(self, index: dict) -> bool:
        return (index.get("_class_name") == self.pipeline_class and not listed(index, "transformer_2")
                and not index.get("expand_timesteps"))

    def matches_hub_id(self, model: str) -> bool:
        return "wan2.1" in model.lower()

    def check_folder(self, path) -> None:
        from ..models.wan import check_wan_model_dir

        check_wan_model_dir(path)
        index = read_model_index(path)
        if not self.matches(index):
            from . import backbone_for_folder

            other = backbone_for_folder(path)
            raise SmraboothError(f"{path} is a {other.title} model, not {self.title}: pass --backbone auto (or "
                                 f"{other.name})")
        check_components(path, index, ("transformer_2",), f"pass a complete {self.title} folder")

    def load(self, model, dtype="auto", vae_dtype="fp32", device=None, local_files_only=None,
             text_encoder_device=None):
        from ..models.wan import load_wan_pipeline

        return load_wan_pipeline(model, dtype=dtype, vae_dtype=vae_dtype, device=device,
                                 local_files_only=local_files_only, text_encoder_device=text_encoder_device,
                                 folder_check=self.check_folder)

    def build_tiny(self, seed: int = 0):
        from ..models.tiny import TinyWanConfig, build_tiny_wan_pipeline

        return build_tiny_wan_pipeline(TinyWanConfig(seed=seed))

    # ------------------------------------------------------------ denoisers
    def denoisers(self, pipe) -> dict[str, torch.nn.Module]:
        """{"main": transformer}, or {"high": transformer, "low": transformer_2} when the pipeline has a boundary."""
        if _has_experts(pipe):
            return {"high": pipe.transformer, "low": pipe.transformer_2}
        return {MAIN: pipe.transformer}

    def experts(self, pipe=None) -> tuple[str, ...]:
        return tuple(self.denoisers(pipe)) if pipe is not None else (MAIN,)

    def boundary(self, pipe) -> float | None:
        """The timestep at which the low-noise expert takes over (None: one denoiser)."""
        return pipe.config.boundary_ratio * NUM_TRAIN_TIMESTEPS if _has_experts(pipe) else None

    def expert_at(self, pipe, timestep) -> str:
        """The stock pipeline's switch: the high-noise expert for t >= boundary, the low-noise one below."""
        boundary = self.boundary(pipe)
        if boundary is None:
            return MAIN
        return "high" if timestep >= boundary else "low"

    def expert_sigmas(self, pipe, expert: str, sigmas: torch.Tensor) -> torch.Tensor:
        """Which entries of a training sigma table the expert `expert` denoises (a bool mask)."""
        if expert == MAIN:
            return torch.ones_like(sigmas, dtype=torch.bool)
        high = sigmas * NUM_TRAIN_TIMESTEPS >= self.boundary(pipe)
        return high if expert == "high" else ~high

    def generation_device(self, pipe) -> torch.device:
        return next(pipe.transformer.parameters()).device

    # ------------------------------------------------------------ flow matching
    def add_noise(self, z0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return (1 - sigma) * z0 + sigma * noise

    def training_target(self, z0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return noise - z0

    def one_step_z0(self, z_t: torch.Tensor, prediction: torch.Tensor, sigma) -> torch.Tensor:
        from ..align.mora import one_step_z0

        return one_step_z0(z_t, prediction, sigma)

    def model_timestep(self, pipe, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The timestep argument of a denoiser call for latents (B, C, T, h, w), as WanPipeline builds it: t (one
        value, or one per item) per item, or with `expand_timesteps` (Wan2.2 TI2V-5B) per token of the
        2x2-patchified latent (pipe None: Wan2.1's form)."""
        batch = latents.shape[0]
        if pipe is not None and getattr(pipe.config, "expand_timesteps", False):
            mask = torch.ones(latents.shape[2:], dtype=torch.float32, device=latents.device)
            return (mask[None, :, ::2, ::2] * t.reshape(-1, 1, 1, 1)).flatten(1).expand(batch, -1)
        return t.expand(batch) if t.ndim <= 1 and t.numel() == 1 else t

    def predict(self, pipe, denoiser, z_t: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The denoiser's velocity for z_t at noise level sigma (1,), in fp32 (a training forward)."""
        t = (sigma * NUM_TRAIN_TIMESTEPS).to(denoiser.dtype)
        timestep = self.model_timestep(pipe, t, z_t).to(denoiser.dtype)
        return denoiser(z_t.to(denoiser.dtype), timestep, text, return_dict=False)[0].float()

    # ------------------------------------------------------------ latents and captions
    def encode_image(self, pipe, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) in [0, 1] -> the normalised latent of a one-frame video (C, 1, h, w)."""
        from ..data.subject import encode_image_latent

        return encode_image_latent(pipe.vae, image)

    def encode_video(self, pipe, frames: torch.Tensor) -> torch.Tensor:
        """(F, 3, H, W) in [0, 1], F = 4k+1 -> the normalised latent (C, 1 + (F-1)/4, h, w)."""
        from ..data.motion import encode_video_latent

        return encode_video_latent(pipe.vae, frames)

    def decode_window(self, vae, latents: torch.Tensor, start: int, window: int, drop: int, checkpoint="block",
                      store_last: int = 0, frame_range: str = "matched", tiling: str = "whole") -> torch.Tensor:
        """MoRA's differentiable decode of latents[start:start+window] (Wan's causal VAE: the first `drop` decoded
        frames are warm-up), kept frames (B, F, 3, H, W) in [0, 1] (or [-1, 1]: frame_range `authors`); both Wan
        VAEs (align.mora, models.vae_decode); `tiling`: align.mora.MORA_DECODES."""
        from ..align.mora import decode_window

        return decode_window(vae, latents, start, window, drop, checkpoint=checkpoint, store_last=store_last,
                             frame_range=frame_range, tiling=tiling)

    def encode_captions(self, pipe, texts, model_id: str, cache_dir) -> dict[str, torch.Tensor]:
        """Caption -> umT5 embedding (1, 512, D), cached by the text encoder's and tokenizer's files."""
        from ..data.cache import cache_key, cached, model_digest

        out = {}
        model = model_digest(model_id, ("text_encoder", "tokenizer"), cache_dir)
        for text in dict.fromkeys(texts):
            def compute(text=text):
                emb, _ = pipe.encode_prompt(text, do_classifier_free_guidance=False, max_sequence_length=512,
                                            device=pipe._execution_device)
                return {"embeds": emb.float()}

            out[text] = cached(cache_dir, cache_key(kind="prompt", model=model, text=text), compute)["embeds"]
        return out

    # ------------------------------------------------------------ SuRA
    def sura_module(self, denoiser, layer: int):
        """The block whose output SuRA aligns (0-based) and its width."""
        if not 0 <= layer < len(denoiser.blocks):
            raise SmraboothError(f"--sura-layer {layer} is outside 0..{len(denoiser.blocks) - 1}")
        c = denoiser.config
        return denoiser.blocks[layer], c.num_attention_heads * c.attention_head_dim

    # ------------------------------------------------------------ LoRA
    @property
    def layer_types(self):
        from ..lora.targets import LAYER_TYPES

        return LAYER_TYPES

    def read_lora(self, path, flag: str = "LoRA file"):
        from ..lora.files import load_lora

        return load_lora(path, flag)

    def describe_lora(self, path) -> str:
        from ..lora.files import describe_lora, load_lora

        return describe_lora(load_lora(path, "FILE"))

    def lora_file_is_mine(self, path) -> bool:
        from ..lora.files import lora_file_format

        return lora_file_format(path) is not None

    # ------------------------------------------------------------ generation
    @property
    def generate_config_class(self):
        from ..sampling import GenerateConfig

        return GenerateConfig

    generate_only = ()
    takes_presets = True

    def generate_defaults(self, preset: str | None = None):
        """The GenerateConfig a generation starts from: stock defaults <- a recipe's preset (a --config file and
        the flags go on top: cli/common.py config_from_args, then `check_generate`)."""
        from ..config import apply_dict
        from ..sampling import PRESETS, GenerateConfig

        config = GenerateConfig()
        return apply_dict(config, PRESETS[preset], f"preset {preset}") if preset else config

    def check_generate(self, config):
        """What this model adds to GenerateConfig.validate(): frame sizes its VAE and patches divide, and the
        expert settings only a two-expert model takes."""
        for name in ("height", "width"):
            self.check_size(f"--{name}", getattr(config, name))
        if not self.two_experts:
            if config.guidance_2 is not None:
                raise SmraboothError("--guidance-2 is the low-noise expert's guidance: only Wan2.2 A14B has one")
            for name in ("subject_experts", "motion_experts"):
                if getattr(config, name) != "trained":
                    raise SmraboothError(f"--{name.replace('_', '-')} places a LoRA in Wan2.2 A14B's experts; "
                                         f"{self.title} has one transformer")
        return config

    two_experts = False

    def check_lora_files(self, config, loras: dict[str, list], paths: dict[str, list]) -> None:
        from ..sampling import place_loras

        for kind, files in loras.items():
            place_loras(self.experts(), kind, files, getattr(config, f"{kind}_experts"), paths.get(kind))

    def check_size(self, flag: str, value: int) -> None:
        if value % self.size_multiple:
            near = max(self.size_multiple, round(value / self.size_multiple) * self.size_multiple)
            raise SmraboothError(f"{flag} {value}: {self.title} needs a multiple of {self.size_multiple} (its VAE's "
                                 f"spatial factor x the 2x2 patch), e.g. {near}")

    def check_train_config(self, kind: str, cfg) -> None:
        """What this model adds to a trainer's settings check: the expert(s) it has, frame sizes it divides."""
        self.check_expert(cfg.expert)
        for name in ("resolution",) if kind == "subject" else ("height", "width"):
            self.check_size(f"--{name}", getattr(cfg, name))

    def generate(self, pipe, config, subject=None, motion=None, progress=True, on_step=None, lora_paths=None):
        from ..sampling import generate_wan

        return generate_wan(pipe, config, subject, motion, progress, on_step, lora_paths)

    def sample_video(self, pipe, config, loras=None, progress=True, on_step=None, output_type="np",
                     prompt_embeds=None, negative_embeds=None):
        return sample_wan(self, pipe, config, loras, progress, on_step, output_type, prompt_embeds,
                          negative_embeds)

    # ------------------------------------------------------------ training
    def train_config_class(self, kind: str) -> type:
        if kind == "subject":
            from ..train.subject import SubjectTrainConfig

            return SubjectTrainConfig
        from ..train.motion import MotionTrainConfig

        return MotionTrainConfig

    def trainer(self, kind: str):
        if kind == "subject":
            from ..train.subject import train_subject

            return train_subject
        from ..train.motion import train_motion

        return train_motion

    def final_names(self, kind: str, cfg) -> tuple[str, ...]:
        return (f"{kind}_lora.safetensors",)


def _has_experts(pipe) -> bool:
    return getattr(pipe.config, "boundary_ratio", None) is not None and getattr(pipe, "transformer_2", None) is not None


# ---------------------------------------------------------------- the sampler
def sample_wan(backbone: Wan21, pipe, config, loras, progress, on_step, output_type, prompt_embeds,
               negative_embeds):
    """WanPipeline's denoising loop (both experts, the boundary, expand_timesteps, its CFG and decoding), with
    the LoRA scales of `config`'s injection schedule set before each step (`loras` from sampling.attach_loras)."""
    from contextlib import ExitStack

    from ..sampling import encode_prompts

    config = backbone.check_generate(config.validate())
    device = backbone.generation_device(pipe)
    with ExitStack() as restore:
        if prompt_embeds is None:  # with --offload the text encoder visits the GPU only for this
            restore.callback(pipe.text_encoder.to, next(pipe.text_encoder.parameters()).device)
            prompt_embeds, negative_embeds = encode_prompts(pipe, config, device, config.guidance > 1.0)
        return _denoise_and_decode(backbone, pipe, config, loras, progress, on_step, output_type, prompt_embeds,
                                   negative_embeds)


def _denoise_and_decode(backbone, pipe, config, loras, progress, on_step, output_type, prompt_embeds,
                        negative_embeds):
    from tqdm.auto import tqdm

    from ..sampling import (
        SampleResult,
        decode_latents,
        make_scheduler,
        schedule_for,
        set_scales,
        set_scheduler_steps,
        step_sigmas,
    )
    from ..step_cache import drop_cached_pass

    denoisers = backbone.denoisers(pipe)
    first = next(iter(denoisers.values()))
    device, dtype = first.device, first.dtype  # WanPipeline: the (first) transformer's dtype for both experts
    do_cfg = config.guidance > 1.0
    guidance = {MAIN: config.guidance, "high": config.guidance,
                "low": config.guidance if config.guidance_2 is None else config.guidance_2}
    prompt_embeds = prompt_embeds.to(device, dtype)
    if negative_embeds is not None:
        negative_embeds = negative_embeds.to(device, dtype)
    both_embeds = torch.cat([prompt_embeds, negative_embeds]) if do_cfg and config.cfg_batch else None

    # sigmas and the per-step LoRA scales
    scheduler = make_scheduler(pipe, config.scheduler, config.shift)
    set_scheduler_steps(scheduler, config.steps, device)
    sigmas = step_sigmas(scheduler, config.steps)
    schedule = schedule_for(config, sigmas)

    # initial noise, drawn on the CPU as WanPipeline does
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    latents = pipe.prepare_latents(1, first.config.in_channels, config.height, config.width, config.frames,
                                   torch.float32, device, generator)

    # --offload with two experts: one on the device at a time, the other waits on the CPU; put back afterwards
    homes = {e: m.device for e, m in denoisers.items()} if config.offload and len(denoisers) > 1 else {}
    scheduler.set_begin_index(0)
    try:
        for i, t in enumerate(tqdm(scheduler.timesteps, desc="denoising", disable=not progress)):
            expert = backbone.expert_at(pipe, t)
            model, scale = denoisers[expert], guidance[expert]
            if homes and model.device != device:
                for module in denoisers.values():
                    if module is not model:
                        module.to("cpu")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                model.to(device)
            scales = schedule.scales_at(i)
            set_scales(loras, scales, expert)
            if config.cache and loras and i and scales != schedule.scales_at(i - 1):
                drop_cached_pass(model)  # a cached residual of the LoRAs before the switch must not be reused
            if on_step is not None:
                on_step(i, scales)
            model_input = latents.to(dtype)
            timestep = backbone.model_timestep(pipe, t, latents)
            context = {"step_index": i, "sigma": float(scheduler.sigmas[i]), "num_inference_steps": config.steps}
            if both_embeds is not None:
                with model.cache_context("cfg", **context):
                    both = model(torch.cat([model_input, model_input]), torch.cat([timestep, timestep]), both_embeds,
                                 return_dict=False)[0]
                velocity, uncond = both.chunk(2)
                velocity = uncond + scale * (velocity - uncond)
            else:
                with model.cache_context("cond", **context):
                    velocity = model(model_input, timestep, prompt_embeds, return_dict=False)[0]
                if do_cfg:
                    with model.cache_context("uncond", **context):
                        uncond = model(model_input, timestep, negative_embeds, return_dict=False)[0]
                    velocity = uncond + scale * (velocity - uncond)
            latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
    finally:
        for expert, home in homes.items():
            denoisers[expert].to(home)
    if not torch.isfinite(latents).all():
        raise SmraboothError("the denoised latents hold NaN or Inf (a LoRA with non-finite values, or scales "
                             "too large?): no video written")
    if output_type == "latent":
        return SampleResult(latents, schedule, sigmas)
    frames = decode_latents(pipe, latents)
    return SampleResult((np.clip(frames, 0, 1) * 255).round().astype(np.uint8), schedule, sigmas)


WAN21 = Wan21()

__all__ = ["EXPERTS", "NUM_TRAIN_TIMESTEPS", "WAN21", "Wan21", "sample_wan"]
