"""Text-to-video sampling with subject and motion LoRAs (docs/method.md stage 3).

The loop is WanPipeline's Wan2.1 loop (same prompt encoding, latent noise, CFG and decoding, so with
no LoRA and the model's scheduler it gives stock `WanPipeline` frames), with one addition: before
each step the LoRA scales are set from an `InjectionSchedule`.

LoRAs run in one of two modes (`lora_mode`):
- "merged" (default on a GPU): scale x B.A is added into the base weights of the layers each LoRA acts
  on (lora/merge.py) and re-merged only when a scale changes; a step then costs what a step without
  LoRAs costs. The base weights are restored afterwards, bit for bit.
- "adapter" (default on the CPU): peft adapters beside the weights, scales set per step.
Speed options, each off by default and measured in benchmarks/: `compile` (regional torch.compile of
the repeated blocks), `cfg_batch` (both guidance passes in one batched forward), `attention` (a backend of
diffusers' attention dispatcher), `cache` (a step cache through diffusers' cache hooks), and for memory
`offload` (the text encoder leaves the GPU once the prompt is encoded) and `vae_tiling`.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .errors import SmraboothError
from .lora.files import LoraWeights
from .lora.inject import PeftState, load_loras_into_transformer, set_lora_scales
from .lora.merge import MergedLoras, merge_loras
from .lora.targets import parse_layer_types
from .recipes import PAPER, RECIPES
from .schedules import InjectionSchedule, shifted_linear_sigmas, t_point_for_sigmas

SCHEDULERS = ("euler", "unipc")
MAX_FRAMES = 1001  # 4k+1 frames; Wan2.1 was trained on 81
MAX_SIDE = 2048  # pixels; Wan2.1 was trained up to 1280x720, and larger frames exhaust memory only after minutes
MAX_SCALE = 10.0  # LoRA scales beyond this only make noise
INJECTIONS = ("sparse", "dense")
_PAPER = PAPER.sampler  # the method's settings (the injection); the video settings default to stock WanPipeline's
LORA_MODES = ("merged", "adapter")
# diffusers cache hooks a user can pick (--cache NAME[:VALUE]): first-block reuses the rest of the model's
# residual while the first block's output changes by less than VALUE (relative; default 0.05). It trades
# fidelity for speed (benchmarks/). diffusers' TaylorSeer hook was tried and left out: with its default
# module identifiers it skips nothing in a Wan transformer.
CACHES = ("first-block",)


@dataclass
class GenerateConfig:
    """Every setting of one generation. The video and sampler defaults are stock WanPipeline's, the LoRA
    injection's the paper's; PRESETS[name] holds every setting of a recipe's sampler."""

    prompt: str = ""
    negative_prompt: str | None = None
    frames: int = 81
    height: int = 480
    width: int = 832
    steps: int = 50
    guidance: float = 5.0
    seed: int = 0
    scheduler: str | None = None  # None: the scheduler saved with the model
    shift: float | None = None  # None: the scheduler's own (euler: the paper's)
    # t_point None: the step whose sigma is closest to that of step `reference_t_point` of the reference
    # schedule (`reference_steps` Euler steps with `reference_shift`, a recipe's own sampler)
    t_point: int | None = None
    reference_t_point: int = _PAPER.t_point
    reference_steps: int = _PAPER.steps
    reference_shift: float = _PAPER.shift
    subject_scale_early: float = _PAPER.subject_scale_early
    subject_scale: float = _PAPER.subject_scale
    motion_scale: float = _PAPER.motion_scale
    injection: str = _PAPER.injection
    subject_layers: tuple[str, ...] = _PAPER.subject_layers
    motion_layers: tuple[str, ...] = _PAPER.motion_layers
    fps: float = 16.0
    max_sequence_length: int = 512
    # execution: how the same video is computed (speed and memory), not what it shows
    lora_mode: str | None = None  # merged | adapter; None: merged on a GPU, adapter on the CPU
    compile: bool = False  # regional torch.compile of the transformer blocks
    cfg_batch: bool = False  # conditional and unconditional passes in one batched forward
    attention: str | None = None  # a diffusers attention backend (None: the default, torch SDPA)
    cache: str | None = None  # a diffusers step cache, e.g. "first-block" or "first-block:0.05"
    offload: bool = False  # move the text encoder to the CPU once the prompt is encoded
    vae_tiling: bool = False  # decode the video in tiles (less memory)

    def validate(self) -> "GenerateConfig":
        from .validation import check_multiple, check_number

        check_number("--frames", self.frames, 1, MAX_FRAMES, integer=True)
        if (self.frames - 1) % 4:
            lo = max(1, (self.frames - 1) // 4 * 4 + 1)
            raise SmraboothError(
                f"--frames {self.frames} is not 4k+1 (Wan's VAE packs 4 frames per latent): use {lo} or {lo + 4}"
            )
        for name in ("height", "width"):
            check_multiple(f"--{name}", getattr(self, name), 16, 16, MAX_SIDE)
        check_number("--steps", self.steps, 1, 1000, integer=True)
        check_number("--guidance", self.guidance, 0, 100)
        check_number("--seed", self.seed, 0, 2**63 - 1, integer=True)
        check_number("--shift", self.shift, 0, 100, low_open=True, optional=True)
        check_number("--t-point", self.t_point, 0, self.steps, integer=True, optional=True)
        check_number("reference_steps", self.reference_steps, 1, 1000, integer=True)
        check_number("reference_shift", self.reference_shift, 0, 100, low_open=True)
        check_number("reference_t_point", self.reference_t_point, 0, self.reference_steps - 1, integer=True)
        for name in ("subject_scale_early", "subject_scale", "motion_scale"):
            check_number("--" + name.replace("_", "-"), getattr(self, name), -MAX_SCALE, MAX_SCALE)
        check_number("--fps", self.fps, 0, 240, low_open=True)
        from .video import exact_rate

        exact_rate(self.fps, "--fps")  # 23.976 is written as 2997/125, never rounded to 24
        check_number("max_sequence_length", self.max_sequence_length, 1, 512, integer=True)
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise SmraboothError(f"--scheduler {self.scheduler!r}: choose from {', '.join(SCHEDULERS)}")
        if self.injection not in INJECTIONS:
            raise SmraboothError(f"--injection {self.injection!r}: choose from {', '.join(INJECTIONS)}")
        if self.lora_mode is not None and self.lora_mode not in LORA_MODES:
            raise SmraboothError(f"--lora-mode {self.lora_mode!r}: choose from {', '.join(LORA_MODES)}")
        if self.cache is not None:
            parse_cache(self.cache)
        if self.attention is not None:
            check_attention_backend(self.attention)
        self.subject_layers = parse_layer_types(self.subject_layers)
        self.motion_layers = parse_layer_types(self.motion_layers)
        return self


# Each recipe's inference settings (`generate --preset NAME`), as GenerateConfig fields.
PRESETS: dict[str, dict] = {name: recipe.sampler.generate_settings() for name, recipe in RECIPES.items()}


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
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=_PAPER.shift if shift is None else shift)
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


def resolve_lora_mode(pipe, config: GenerateConfig) -> str:
    """'merged' on a GPU, 'adapter' on the CPU, unless the config names one."""
    if config.lora_mode is not None:
        return config.lora_mode
    return "merged" if pipe.transformer.device.type == "cuda" else "adapter"


def attach_loras(pipe, config: GenerateConfig, subject: LoraWeights | None, motion: LoraWeights | None,
                 paths: dict[str, str] | None = None, mode: str = "adapter"):
    """Put the LoRAs into `pipe.transformer` (sparse or dense): peft adapters (returns their layers) or,
    with mode 'merged', a `MergedLoras` whose weights go in at the first `set_scales`."""
    paths = paths or {}
    sparse = config.injection == "sparse"
    loras = {}
    if subject is not None:
        loras["subject"] = (subject, config.subject_layers if sparse else None)
    if motion is not None:
        loras["motion"] = (motion, config.motion_layers if sparse else None)
    if not loras:
        return []
    if mode == "merged":
        return merge_loras(pipe.transformer, loras, paths)
    return load_loras_into_transformer(pipe.transformer, loras, paths)


def adapter_names(pipe) -> set[str]:
    return set(getattr(pipe.transformer, "peft_config", {}) or {})


def detach_loras(pipe, loras=None, before: PeftState | None = None) -> None:
    """Undo `attach_loras`: merged weights restored; the transformer's adapters, peft layers and config as
    `before` recorded them before attaching (a `PeftState`), or without it every adapter deleted."""
    if isinstance(loras, MergedLoras):
        loras.restore()
    if before is not None:
        before.restore()
    elif names := sorted(adapter_names(pipe)):
        pipe.transformer.delete_adapters(names)


def set_scales(loras, scales: dict[str, float]) -> None:
    """Scales of attached LoRAs (either mode) for the next step."""
    if isinstance(loras, MergedLoras):
        loras.set_scales(scales)
    elif loras:
        set_lora_scales(loras, scales)


def schedule_for(config: GenerateConfig, sigmas: list[float]) -> InjectionSchedule:
    if config.injection == "dense":
        return InjectionSchedule.constant(config.subject_scale, config.motion_scale)
    t_point = config.t_point
    if t_point is None:
        t_point = t_point_for_sigmas(sigmas, config.reference_t_point, config.reference_steps, config.reference_shift)
    return InjectionSchedule(t_point, config.subject_scale_early, config.subject_scale, config.motion_scale)


# ---------------------------------------------------------------- execution options
def parse_cache(text: str) -> tuple[str, float | None]:
    """'first-block' or 'first-block:0.05' -> (name, threshold or None)."""
    name, _, value = text.partition(":")
    if name not in CACHES:
        raise SmraboothError(f"--cache {text!r}: choose from {', '.join(CACHES)} (optionally NAME:THRESHOLD)")
    if not value:
        return name, None
    try:
        threshold = float(value)
    except ValueError:
        raise SmraboothError(f"--cache {text!r}: the threshold after ':' must be a number") from None
    if not (threshold > 0 and np.isfinite(threshold)):
        raise SmraboothError(f"--cache {text!r}: the threshold must be a positive number")
    return name, threshold


def make_cache_config(text: str):
    """A diffusers cache-hook config from 'first-block[:threshold]'."""
    import diffusers

    _, value = parse_cache(text)
    return diffusers.FirstBlockCacheConfig(threshold=0.05 if value is None else value)


def installed_attention_backends() -> list[str]:
    """diffusers attention backends usable here: installed, and needing no download from the hub."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    usable = []
    for backend in AttentionBackendName:
        if backend.value.endswith("_hub") or backend.value in ("_native_npu", "_native_xla", "flex"):
            continue  # hub kernels need a download; flex attention is only usable compiled (17x slower eager)
        try:
            _check_attention_backend_requirements(backend)
        except (RuntimeError, ValueError, ImportError):
            continue
        usable.append(backend.value)
    return usable


def check_attention_backend(name: str) -> None:
    try:
        usable = installed_attention_backends()
    except ImportError:  # a diffusers without the dispatcher
        raise SmraboothError("--attention needs diffusers' attention dispatcher (diffusers >= 0.35)") from None
    if name not in usable:
        raise SmraboothError(f"--attention {name!r} is not usable here; installed backends: {', '.join(usable)}")


@contextmanager
def execution_options(pipe, config: GenerateConfig):
    """The attention backend, step cache and compilation of one generation; all undone afterwards."""
    transformer = pipe.transformer
    with ExitStack() as stack:
        if config.attention:
            from diffusers.models.attention_dispatch import attention_backend

            stack.enter_context(attention_backend(config.attention))
        if config.cache:
            transformer.enable_cache(make_cache_config(config.cache))
            stack.callback(transformer.disable_cache)
        if config.vae_tiling and hasattr(pipe.vae, "enable_tiling"):
            was_tiling = bool(getattr(pipe.vae, "use_tiling", False))
            pipe.vae.enable_tiling()
            stack.callback(lambda: None if was_tiling else pipe.vae.disable_tiling())
        if config.compile:
            blocks = [b for b in transformer.modules() if b.__class__.__name__ in transformer._repeated_blocks]
            fresh = [b for b in blocks if getattr(b, "_compiled_call_impl", None) is None]
            # the cache hooks run outside the compiled graph (torch.compiler.disable), so no full graph then
            transformer.compile_repeated_blocks(fullgraph=not config.cache)
            stack.callback(lambda: [setattr(b, "_compiled_call_impl", None) for b in fresh])
        yield


def encode_prompts(pipe, config: GenerateConfig, device, do_cfg: bool):
    """umT5 embeddings of the prompt and negative prompt. With `offload` the text encoder is on the GPU only
    while it encodes; wherever it was found, it is put back there (the caller restores it after decoding)."""
    encoder = pipe.text_encoder
    if config.offload or next(encoder.parameters()).device != torch.device(device):
        encoder.to(device)
    embeds = pipe.encode_prompt(
        prompt=config.prompt, negative_prompt=config.negative_prompt, do_classifier_free_guidance=do_cfg,
        num_videos_per_prompt=1, max_sequence_length=config.max_sequence_length, device=device,
    )
    if config.offload:
        encoder.to("cpu")
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return embeds


@dataclass
class SampleResult:
    frames: np.ndarray  # (F, H, W, 3) uint8
    schedule: InjectionSchedule
    sigmas: list[float] = field(default_factory=list)


@torch.no_grad()
def sample_video(
    pipe,
    config: GenerateConfig,
    lora_layers=None,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
    output_type: str = "np",
    prompt_embeds: torch.Tensor | None = None,
    negative_embeds: torch.Tensor | None = None,
) -> SampleResult:
    """Denoise one video; attached LoRAs (`lora_layers`, from `attach_loras`, either mode) get their scales
    set every step.

    Precomputed `prompt_embeds`/`negative_embeds` skip the text encoder (trainers free it early).
    """
    config = config.validate()
    device = pipe.transformer.device
    do_cfg = config.guidance > 1.0

    with ExitStack() as restore:
        # 1. prompt embeddings (with --offload the text encoder visits the GPU only for this)
        if prompt_embeds is None:
            restore.callback(pipe.text_encoder.to, next(pipe.text_encoder.parameters()).device)
            prompt_embeds, negative_embeds = encode_prompts(pipe, config, device, do_cfg)
        return _denoise_and_decode(pipe, config, lora_layers, progress, on_step, output_type, prompt_embeds,
                                   negative_embeds)


def _denoise_and_decode(pipe, config, lora_layers, progress, on_step, output_type, prompt_embeds,
                        negative_embeds) -> SampleResult:
    from tqdm.auto import tqdm

    transformer = pipe.transformer
    device = transformer.device
    do_cfg = config.guidance > 1.0
    prompt_embeds = prompt_embeds.to(device, transformer.dtype)
    if negative_embeds is not None:
        negative_embeds = negative_embeds.to(device, transformer.dtype)
    if do_cfg and config.cfg_batch:
        both_embeds = torch.cat([prompt_embeds, negative_embeds])

    # 2. sigmas and the per-step LoRA scales
    scheduler = make_scheduler(pipe, config.scheduler, config.shift)
    set_scheduler_steps(scheduler, config.steps, device)
    sigmas = step_sigmas(scheduler, config.steps)
    schedule = schedule_for(config, sigmas)

    # 3. initial noise, drawn on the CPU as WanPipeline does
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    latents = pipe.prepare_latents(1, transformer.config.in_channels, config.height, config.width, config.frames,
                                   torch.float32, device, generator)

    # 4. denoising: scales, model (both CFG passes), Euler/UniPC step
    scheduler.set_begin_index(0)
    for i, t in enumerate(tqdm(scheduler.timesteps, desc="denoising", disable=not progress)):
        scales = schedule.scales_at(i)
        set_scales(lora_layers, scales)
        if on_step is not None:
            on_step(i, scales)
        model_input = latents.to(transformer.dtype)
        context = {"step_index": i, "sigma": float(scheduler.sigmas[i]), "num_inference_steps": config.steps}
        if do_cfg and config.cfg_batch:
            with transformer.cache_context("cfg", **context):
                both = transformer(torch.cat([model_input, model_input]), t.expand(2), both_embeds,
                                   return_dict=False)[0]
            velocity, uncond = both.chunk(2)
            velocity = uncond + config.guidance * (velocity - uncond)
        else:
            timestep = t.expand(latents.shape[0])
            with transformer.cache_context("cond", **context):
                velocity = transformer(model_input, timestep, prompt_embeds, return_dict=False)[0]
            if do_cfg:
                with transformer.cache_context("uncond", **context):
                    uncond = transformer(model_input, timestep, negative_embeds, return_dict=False)[0]
                velocity = uncond + config.guidance * (velocity - uncond)
        latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
    if not torch.isfinite(latents).all():
        raise SmraboothError("the denoised latents hold NaN or Inf (a LoRA with non-finite values, or scales "
                             "too large?): no video written")

    # 5. decode
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
    """Python API of `smrabooth generate`: attach the LoRAs, sample, and leave the pipeline as it was
    (adapters deleted, merged weights restored, cache/compile/attention backend undone), whatever happens:
    a LoRA that does not fit, a NaN, an interruption."""
    config = config.validate()
    loras, before = None, PeftState(pipe.transformer)
    try:
        with execution_options(pipe, config):
            loras = attach_loras(pipe, config, subject_lora, motion_lora, lora_paths,
                                 mode=resolve_lora_mode(pipe, config))
            return sample_video(pipe, config, loras, progress=progress, on_step=on_step)
    finally:
        detach_loras(pipe, loras, before)  # also peft's LoRA layers gone: the transformer's own modules again


__all__ = [
    "GenerateConfig",
    "PRESETS",
    "SampleResult",
    "attach_loras",
    "decode_latents",
    "detach_loras",
    "execution_options",
    "generate",
    "installed_attention_backends",
    "make_scheduler",
    "sample_video",
    "shifted_linear_sigmas",
]
