"""Text-to-video generation with subject and motion LoRAs (docs/method.md stage 3): the settings, the LoRA
injection and the generation API. Each backbone runs its own sampler (backbones/): Wan's is WanPipeline's loop
(both Wan2.2 A14B experts, the boundary, TI2V-5B's per-token timesteps), ZeroScope's the stock
TextToVideoSDPipeline; with no LoRA either gives its stock pipeline's frames. Before each step the LoRA scales
are set from an `InjectionSchedule`.

LoRAs run in one of two modes (`lora_mode`):
- "merged" (default on a GPU): scale x B.A is added into the base weights of the layers each LoRA acts
  on (lora/merge.py) and re-merged only when a scale changes; a step then costs what a step without
  LoRAs costs. The base weights are restored afterwards, bit for bit.
- "adapter" (default on the CPU): peft adapters beside the weights, scales set per step.
On Wan2.2 A14B each LoRA file goes into the expert it was trained for (`subject_experts`/`motion_experts`
"trained"; a file that names no expert goes into both), and both modes run per expert.
Speed options, each off by default and measured in benchmarks/: `compile` (regional torch.compile of
the repeated blocks), `cfg_batch` (both guidance passes in one batched forward), `attention` (a backend of
diffusers' attention dispatcher), `cache` (a step cache through diffusers' cache hooks), and for memory
`offload` (the text encoder leaves the GPU once the prompt is encoded) and `vae_tiling`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from .backbones.base import MAIN
from .config import setting
from .errors import SmraboothError
from .lora.files import LoraWeights
from .lora.inject import PeftState, load_loras_into_transformer, set_lora_scales
from .lora.merge import MergedLoras, merge_loras
from .lora.targets import parse_layer_types
from .recipes import PAPER, RECIPES
from .schedules import InjectionSchedule, shifted_linear_sigmas, t_point_for_sigmas
from .step_cache import parse_cache

SCHEDULERS = ("euler", "unipc")
MAX_FRAMES = 1001  # 4k+1 frames; Wan2.1 was trained on 81
MAX_SIDE = 2048  # pixels; Wan2.1 was trained up to 1280x720, and larger frames exhaust memory only after minutes
MAX_SCALE = 10.0  # LoRA scales beyond this only make noise
INJECTIONS = ("sparse", "dense")
_PAPER = PAPER.sampler  # the method's settings (the injection); the video settings default to stock WanPipeline's
LORA_MODES = ("merged", "adapter")
# diffusers cache hooks a user can pick (--cache NAME[:VALUE], step_cache.py): first-block and mag. They trade
# fidelity for speed (benchmarks/). diffusers' TaylorSeer hook was tried and left out: with its default
# module identifiers it skips nothing in a Wan transformer.
# Which Wan2.2 A14B expert(s) a LoRA goes into: trained = the expert its file records (a file that records
# none: both; docs/method.md, Wan2.2), or high, low, both for every file given.
EXPERT_PLACEMENTS = ("trained", "high", "low", "both")


SPEED = "speed and memory (the same video, computed differently)"  # a section of generate --help


@dataclass
class GenerateConfig:
    """Every setting of one generation (`smrabooth generate` has a flag for each, made from these fields; a
    --config YAML file holds any of them). The video and sampler defaults are stock WanPipeline's, the LoRA
    injection's the paper's; PRESETS[name] holds every setting of a recipe's sampler."""

    prompt: str = setting("", "text prompt, e.g. 'a V* dog doing the S* dribble on a beach'")
    negative_prompt: str | None = setting(None, "negative prompt (none: empty, as WanPipeline)")
    frames: int = setting(81, "number of frames, 4k+1")
    height: int = setting(480, "height in pixels, multiple of 16")
    width: int = setting(832, "width in pixels, multiple of 16")
    steps: int = setting(50, "denoising steps")
    guidance: float = setting(5.0, "classifier-free guidance scale")
    guidance_2: float | None = setting(None, "Wan2.2 A14B: the low-noise expert's guidance scale (none: --guidance, "
                                       "as WanPipeline)")
    seed: int = setting(0, "random seed")
    scheduler: str | None = setting(None, "sampler (none: the scheduler saved with the model; euler: the paper's "
                                    "flow-matching Euler)", choices=SCHEDULERS)
    shift: float | None = setting(None, f"sigma shift (none: the scheduler's own; euler's {_PAPER.shift:g})")
    # t_point None: the step whose sigma is closest to that of step `reference_t_point` of the reference
    # schedule (`reference_steps` Euler steps with `reference_shift`, a recipe's own sampler)
    t_point: int | None = setting(None, "first step with the full subject scale (none: the step of the noise level "
                                  f"of --reference-t-point; paper: step {_PAPER.t_point} of {_PAPER.steps} at shift "
                                  f"{_PAPER.shift:g})")
    reference_t_point: int = setting(_PAPER.t_point, f"T_point as a step of the preset's own {_PAPER.steps}-step "
                                     "schedule, mapped to --steps by noise level")
    reference_steps: int = setting(_PAPER.steps, cli=False)
    reference_shift: float = setting(_PAPER.shift, cli=False)
    subject_scale_early: float = setting(_PAPER.subject_scale_early, "subject LoRA scale before --t-point")
    subject_scale: float = setting(_PAPER.subject_scale, "subject LoRA scale from --t-point on")
    motion_scale: float = setting(_PAPER.motion_scale, "motion LoRA scale")
    injection: str = setting(_PAPER.injection, "sparse: the paper's layer split and timing; dense: both LoRAs "
                             "everywhere, constant", choices=INJECTIONS)
    subject_layers: tuple[str, ...] = setting(_PAPER.subject_layers, "layer types of the subject LoRA under sparse "
                                              "injection")
    motion_layers: tuple[str, ...] = setting(_PAPER.motion_layers, "layer types of the motion LoRA under sparse "
                                             "injection")
    subject_experts: str = setting("trained", "Wan2.2 A14B: the expert(s) the subject LoRA goes into; trained: the "
                                   "one each file was trained for, both for a file that records none (docs/method.md)",
                                   choices=EXPERT_PLACEMENTS)
    motion_experts: str = setting("trained", "Wan2.2 A14B: the expert(s) the motion LoRA goes into, as "
                                  "--subject-experts", choices=EXPERT_PLACEMENTS)
    fps: float = setting(16.0, "frame rate of the mp4")
    max_sequence_length: int = setting(512, cli=False)
    # execution: how the same video is computed (speed and memory), not what it shows
    lora_mode: str | None = setting(None, "merged: LoRAs added into the weights, re-merged at the switch step (no "
                                    "per-step cost); adapter: peft layers with per-step scales; none: merged on a "
                                    "GPU, adapter on the CPU", choices=LORA_MODES, group=SPEED)
    compile: bool = setting(False, "torch.compile the repeated transformer blocks (GPU; compiles during the first "
                            "step)", group=SPEED)
    cfg_batch: bool = setting(False, "both guidance passes in one batched forward (more memory)", group=SPEED)
    attention: str | None = setting(None, "a diffusers attention backend installed here (e.g. _native_cudnn, "
                                    "flash); none: torch SDPA", group=SPEED)
    cache: str | None = setting(None, "step cache through diffusers' hooks (step_cache.py): first-block[:THRESHOLD] "
                                "(threshold 0.05 if not given) or mag[:THRESHOLD] (MagCache, 0.06; the first video "
                                "of a model and schedule calibrates it); larger is faster and less faithful; see "
                                "benchmarks/README.md", group=SPEED)
    offload: bool = setting(False, "the text encoder (and Wan2.2 A14B's idle expert) wait on the CPU except while "
                            "they work (saves ~11 GB of GPU memory)", group=SPEED)
    vae_tiling: bool = setting(False, "decode the video in tiles (less memory)", group=SPEED)
    fast: bool = setting(False, "the speed settings that keep the video within 30 dB of the exact one (measured: "
                         "benchmarks/README.md): LoRAs merged, compile on a GPU, and --cache mag (0.25 at 50 steps or "
                         "more, else 0.06; first-block:0.05 on Wan2.2 A14B) unless you give --cache or --lora-mode",
                         group=SPEED)

    def validate(self) -> GenerateConfig:
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
        check_number("--guidance-2", self.guidance_2, 0, 100, optional=True)
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
        for name in ("subject_experts", "motion_experts"):
            if getattr(self, name) not in EXPERT_PLACEMENTS:
                raise SmraboothError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: choose from "
                                     f"{', '.join(EXPERT_PLACEMENTS)}")
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
    from .backbones import backbone_of

    return "merged" if backbone_of(pipe).generation_device(pipe).type == "cuda" else "adapter"


def _as_files(weights) -> list[LoraWeights]:
    if weights is None:
        return []
    return list(weights) if isinstance(weights, (list, tuple)) else [weights]


def place_loras(experts: tuple[str, ...], name: str, weights, placement: str = "trained",
                paths: list[str] | None = None) -> dict[str, tuple[LoraWeights, str | None]]:
    """The file (and its path) each denoiser gets of LoRA `name`, given as one or several files (one per A14B
    expert). One denoiser: one file. Two experts, placement 'trained': each file into the expert it records,
    a file that records none into both; 'high', 'low', 'both': one file, into those experts."""
    files = _as_files(weights)
    paths = list(paths or []) + [None] * len(files)
    flag = f"--{name}-lora"
    if not files:
        return {}
    if experts == (MAIN,):
        if len(files) > 1:
            raise SmraboothError(f"{flag}: {len(files)} files, but this model has one transformer: give one file "
                                 f"(several are for Wan2.2 A14B's two experts)")
        return {MAIN: (files[0], paths[0])}
    if placement != "trained":
        if len(files) > 1:
            raise SmraboothError(f"{flag}: --{name}-experts {placement} places one file; got {len(files)}")
        targets = experts if placement == "both" else (placement,)
        return {e: (files[0], paths[0]) for e in targets}
    placed: dict[str, tuple[LoraWeights, str | None]] = {}
    for file, path in zip(files, paths):
        made_for = file.info.get("expert")
        for expert in (made_for,) if made_for in experts else experts:
            if expert in placed:
                raise SmraboothError(f"{flag}: two files for the {expert}-noise expert ({placed[expert][1] or 'one'} "
                                     f"and {path or 'another'}); give one file per expert")
            placed[expert] = (file, path)
    return placed


@dataclass
class AttachedLoras:
    """The LoRAs of one generation, per denoiser: peft LoRA layers (adapter mode) or a `MergedLoras`."""

    handles: dict[str, object] = field(default_factory=dict)

    def set_scales(self, scales: dict[str, float], expert: str | None = None) -> None:
        """Scales for the next step, in every denoiser or only in `expert`, the one that runs it (an idle expert's
        merged weights are recomputed when it next runs, on the device it runs on)."""
        for name, handle in self.handles.items():
            if expert is None or name == expert:
                set_scales(handle, scales)

    def restore(self) -> None:
        for handle in self.handles.values():
            if isinstance(handle, MergedLoras):
                handle.restore()

    def __bool__(self) -> bool:
        return any(bool(h) for h in self.handles.values())

    def __iter__(self):  # the LoRA layers of adapter mode, as a list of them was before experts
        for handle in self.handles.values():
            if not isinstance(handle, MergedLoras):
                yield from handle


def attach_loras(pipe, config: GenerateConfig, subject, motion, paths: dict | None = None,
                 mode: str = "adapter") -> AttachedLoras:
    """Put the LoRAs (each one file, or a list of per-expert files) into the pipeline's denoisers (sparse or
    dense): peft adapters, or with mode 'merged' `MergedLoras` whose weights go in at the first `set_scales`."""
    from .backbones import backbone_of

    paths = paths or {}
    denoisers = backbone_of(pipe).denoisers(pipe)
    sparse = config.injection == "sparse"
    per_expert: dict[str, dict] = {}
    per_expert_paths: dict[str, dict] = {}
    for name, weights, placement, layers in (
            ("subject", subject, config.subject_experts, config.subject_layers if sparse else None),
            ("motion", motion, config.motion_experts, config.motion_layers if sparse else None)):
        given = paths.get(name)
        given = [given] if isinstance(given, str) else given
        for expert, (w, path) in place_loras(tuple(denoisers), name, weights, placement, given).items():
            per_expert.setdefault(expert, {})[name] = (w, layers)
            if path:
                per_expert_paths.setdefault(expert, {})[name] = path
    attached = AttachedLoras()
    for expert, loras in per_expert.items():
        module = denoisers[expert]
        attach = merge_loras if mode == "merged" else load_loras_into_transformer
        attached.handles[expert] = attach(module, loras, per_expert_paths.get(expert, {}))
    return attached


def adapter_names(pipe) -> set[str]:
    return set(getattr(pipe.transformer, "peft_config", {}) or {})


def detach_loras(pipe, loras=None, before=None) -> None:
    """Undo `attach_loras`: merged weights restored; each denoiser's adapters, peft layers and config as `before`
    recorded them before attaching (a `PeftState`, or a list of them), or without it every adapter deleted."""
    from .backbones import backbone_of

    if isinstance(loras, (MergedLoras, AttachedLoras)):
        loras.restore()
    if before is not None:
        for state in before if isinstance(before, (list, tuple)) else [before]:
            state.restore()
        return
    for module in backbone_of(pipe).denoisers(pipe).values():
        if names := sorted(getattr(module, "peft_config", {}) or {}):
            module.delete_adapters(names)


def set_scales(loras, scales: dict[str, float], expert: str | None = None) -> None:
    """Scales of attached LoRAs (either mode) for the next step (of the denoiser `expert`, when given)."""
    if isinstance(loras, AttachedLoras):
        loras.set_scales(scales, expert)
    elif isinstance(loras, MergedLoras):
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
    """The attention backend, step cache and compilation of one generation, on every denoiser; all undone
    afterwards."""
    from .backbones import backbone_of
    from .step_cache import step_caches

    with ExitStack() as stack:
        if config.attention:
            from diffusers.models.attention_dispatch import attention_backend

            stack.enter_context(attention_backend(config.attention))
        if config.vae_tiling and hasattr(pipe.vae, "enable_tiling"):
            was_tiling = bool(getattr(pipe.vae, "use_tiling", False))
            pipe.vae.enable_tiling()
            stack.callback(lambda: None if was_tiling else pipe.vae.disable_tiling())
        denoisers = backbone_of(pipe).denoisers(pipe)
        if config.cache:
            stack.enter_context(step_caches(denoisers, config.cache, config.steps, config.shift, config.scheduler))
        for transformer in denoisers.values():
            if config.compile:
                blocks = [b for b in transformer.modules() if b.__class__.__name__ in transformer._repeated_blocks]
                fresh = [b for b in blocks if getattr(b, "_compiled_call_impl", None) is None]
                # the cache hooks run outside the compiled graph (torch.compiler.disable), so no full graph then
                transformer.compile_repeated_blocks(fullgraph=not config.cache)
                stack.callback(lambda fresh=fresh: [setattr(b, "_compiled_call_impl", None) for b in fresh])
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
    """Denoise one video with the pipeline's backbone sampler; attached LoRAs (`lora_layers`, from
    `attach_loras`, either mode) get their scales set every step.

    Precomputed `prompt_embeds`/`negative_embeds` skip the text encoder (trainers free it early).
    """
    from .backbones import backbone_of

    return backbone_of(pipe).sample_video(pipe, config, lora_layers, progress, on_step, output_type, prompt_embeds,
                                          negative_embeds)


def decode_latents(pipe, latents: torch.Tensor) -> np.ndarray:
    """Normalised latents -> float frames (F, H, W, 3) in [0, 1], exactly as WanPipeline decodes."""
    from .models.vae_decode import denormalize_latents

    vae = pipe.vae
    latents = latents.to(vae.device, vae.dtype)
    video = vae.decode(denormalize_latents(vae, latents), return_dict=False)[0]
    return pipe.video_processor.postprocess_video(video, output_type="np")[0]


def generate(
    pipe,
    config,
    subject_lora=None,
    motion_lora=None,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
    lora_paths: dict | None = None,
) -> SampleResult:
    """Python API of `smrabooth generate`, on any backbone's pipeline (`config`: its generate_config_class):
    attach the LoRAs (each one file, or a list of per-expert files), sample, and leave the pipeline as it was."""
    from .backbones import backbone_of

    return backbone_of(pipe).generate(pipe, config, subject_lora, motion_lora, progress, on_step, lora_paths)


# --fast's step cache, by the number of steps: MagCache at the threshold that kept 30 dB against the exact video in
# every measurement on the sprites bench (benchmarks/README.md, 2026-12-06). At 50 steps or more, 0.25: 32.3 / 34.3
# dB worst without / with both LoRAs, computing 40% of the passes (its floor), 0.45x stock's time per 1.3B video
# (measured at that floor). Below, MagCache's default 0.06: 32.8 dB worst at the bench's 20 steps, where 0.12 fell
# to 29.8; about 0.53x (derived). A14B's two experts take first-block.
FAST_MANY_STEPS = 50
FAST_CACHE_MANY_STEPS, FAST_CACHE, FAST_CACHE_TWO_EXPERTS = "mag:0.25", "mag:0.06", "first-block:0.05"


def fast_settings(pipe, config: GenerateConfig) -> GenerateConfig:
    """`config` with what --fast adds: LoRAs merged, compile on a GPU, the step cache; a cache or LoRA mode the
    config names is kept."""
    from dataclasses import replace

    from .backbones import backbone_of

    if not config.fast:
        return config
    backbone = backbone_of(pipe)
    changes = {"compile": config.compile or backbone.generation_device(pipe).type == "cuda"}
    if config.cache is None:
        changes["cache"] = (FAST_CACHE_TWO_EXPERTS if backbone.two_experts else
                            FAST_CACHE_MANY_STEPS if config.steps >= FAST_MANY_STEPS else FAST_CACHE)
    if config.lora_mode is None:
        changes["lora_mode"] = "merged"
    return replace(config, **changes)


def generate_wan(pipe, config: GenerateConfig, subject_lora=None, motion_lora=None, progress: bool = True,
                 on_step=None, lora_paths=None) -> SampleResult:
    """Wan's generate: adapters deleted, merged weights restored, cache/compile/attention backend undone in
    every denoiser, whatever happens: a LoRA that does not fit, a NaN, an interruption."""
    from .backbones import backbone_of

    backbone = backbone_of(pipe)
    config = fast_settings(pipe, backbone.check_generate(config.validate()))
    loras = None
    before = [PeftState(m) for m in backbone.denoisers(pipe).values()]
    try:
        with execution_options(pipe, config):
            loras = attach_loras(pipe, config, subject_lora, motion_lora, lora_paths,
                                 mode=resolve_lora_mode(pipe, config))
            return sample_video(pipe, config, loras, progress=progress, on_step=on_step)
    finally:
        detach_loras(pipe, loras, before)  # also peft's LoRA layers gone: the transformers' own modules again


__all__ = [
    "PRESETS",
    "AttachedLoras",
    "GenerateConfig",
    "SampleResult",
    "attach_loras",
    "decode_latents",
    "detach_loras",
    "execution_options",
    "generate",
    "generate_wan",
    "installed_attention_backends",
    "make_scheduler",
    "place_loras",
    "sample_video",
    "shifted_linear_sigmas",
]
