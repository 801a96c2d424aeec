"""`smrabooth generate`: a video from a prompt, with optional subject and motion LoRAs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..recipes import DEFAULT_RECIPE, PAPER, RECIPES
from .common import add_model_args, backbone_of, check_model_args, load_pipeline_from_args, use_hub

_P = PAPER.sampler

# flag -> GenerateConfig field; flags left unset fall back to the preset, then the defaults
_FLAGS = {
    "prompt": str, "negative_prompt": str, "frames": int, "height": int, "width": int, "steps": int,
    "guidance": float, "seed": int, "scheduler": str, "shift": float, "t_point": int, "reference_t_point": int,
    "subject_scale_early": float, "subject_scale": float, "motion_scale": float, "injection": str,
    "subject_layers": str, "motion_layers": str, "fps": float, "lora_mode": str, "attention": str, "cache": str,
    "compile": bool, "cfg_batch": bool, "offload": bool, "vae_tiling": bool,
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate a video (optionally with subject/motion LoRAs)",
        description="Generate a video with Wan2.1 and optional subject and motion LoRAs, combined by sparse "
        "LoRA injection (docs/method.md stage 3). Unset flags come from --config, then --preset (by default the "
        "preset of the recipe the LoRAs were trained with, else official; without LoRAs none), then stock "
        "WanPipeline defaults.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_args(p)
    p.add_argument("--subject-lora", help="subject LoRA (.safetensors; diffusers, ComfyUI or DiffSynth keys)")
    p.add_argument("--motion-lora", help="motion LoRA (.safetensors)")
    p.add_argument("--prompt", help="text prompt, e.g. 'a V* dog doing the S* dribble on a beach'")
    p.add_argument("--negative-prompt", help="negative prompt (default: empty, as WanPipeline)")
    p.add_argument("--frames", type=int, help=f"number of frames, 4k+1 (default 81; paper {_P.frames})")
    p.add_argument("--height", type=int, help=f"height in pixels, multiple of 16 (default 480; paper {_P.height})")
    p.add_argument("--width", type=int, help=f"width in pixels, multiple of 16 (default 832; paper {_P.width})")
    p.add_argument("--steps", type=int, help=f"denoising steps (default 50; paper {_P.steps})")
    p.add_argument("--guidance", type=float, help=f"classifier-free guidance scale (default 5; paper {_P.guidance:g})")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--scheduler", choices=["euler", "unipc"],
                   help="sampler (default: the model's own; euler = the paper's flow-matching Euler)")
    p.add_argument("--shift", type=float, help=f"sigma shift (default: the scheduler's own; euler {_P.shift:g})")
    p.add_argument("--t-point", type=int,
                   help="first step with the full subject scale (default: the step of the noise level of "
                   f"--reference-t-point; paper: step {_P.t_point} of {_P.steps} at shift {_P.shift:g})")
    p.add_argument("--reference-t-point", type=int,
                   help=f"T_point as a step of the preset's own {_P.steps}-step schedule, mapped to --steps by "
                   f"noise level (default {_P.t_point})")
    p.add_argument("--subject-scale-early", type=float,
                   help=f"subject LoRA scale before --t-point (default {_P.subject_scale_early:g})")
    p.add_argument("--subject-scale", type=float,
                   help=f"subject LoRA scale from --t-point on (default {_P.subject_scale:g})")
    p.add_argument("--motion-scale", type=float, help=f"motion LoRA scale (default {_P.motion_scale:g})")
    p.add_argument("--injection", choices=["sparse", "dense"],
                   help="sparse: paper's layer split and timing (default); dense: both LoRAs everywhere, constant")
    p.add_argument("--subject-layers",
                   help=f"layer types of the subject LoRA under sparse injection ({','.join(_P.subject_layers)})")
    p.add_argument("--motion-layers",
                   help=f"layer types of the motion LoRA under sparse injection ({','.join(_P.motion_layers)})")
    p.add_argument("--fps", type=float, help=f"frame rate of the mp4 (default 16; paper {_P.fps:g})")
    speed = p.add_argument_group("speed and memory (the same video, computed differently)")
    speed.add_argument("--lora-mode", choices=["merged", "adapter"],
                       help="merged: LoRAs added into the weights, re-merged at the switch step (no per-step "
                       "cost); adapter: peft layers with per-step scales (default: merged on a GPU, adapter on CPU)")
    speed.add_argument("--compile", action="store_true", default=None,
                       help="torch.compile the repeated transformer blocks (GPU; compiles during the first step)")
    speed.add_argument("--cfg-batch", action="store_true", default=None,
                       help="both guidance passes in one batched forward (more memory)")
    speed.add_argument("--attention", help="a diffusers attention backend installed here (e.g. _native_cudnn, "
                       "flash); default: torch SDPA")
    speed.add_argument("--cache", help="step cache through diffusers' hooks: first-block[:THRESHOLD] (default "
                       "0.05; larger is faster and less faithful; see benchmarks/README.md)")
    speed.add_argument("--offload", action="store_true", default=None,
                       help="keep the text encoder on the CPU except while it encodes (saves ~11 GB of GPU memory)")
    speed.add_argument("--vae-tiling", action="store_true", default=None, help="decode the video in tiles")
    p.add_argument("--preset", choices=list(RECIPES),
                   help="a recipe's inference settings (default: the recipe the LoRAs record, else "
                   f"{DEFAULT_RECIPE}; without LoRAs, none: stock WanPipeline's)")
    p.add_argument("--config", help="YAML file of generation settings (flags override it)")
    p.add_argument("--out", required=True, help="output .mp4 path")
    p.add_argument("--save-frames", help="also write PNG frames into this folder")
    p.set_defaults(func=run)


def preset_for(args) -> tuple[str | None, str | None]:
    """The preset a generation uses, and a line saying why when the user did not pick it (None: nothing to say).

    --preset wins. Without it: no LoRA, no preset (stock WanPipeline's defaults, the baseline the paper compares
    with); with LoRAs, the recipe they record (a LoRA file's metadata: the recipe it was trained with); LoRAs
    that record two different recipes, or none, get the default recipe's."""
    from ..lora.files import recorded_recipe

    if getattr(args, "preset", None):
        return args.preset, None
    loras = {k: p for k, p in (("subject", getattr(args, "subject_lora", None)),
                               ("motion", getattr(args, "motion_lora", None))) if p}
    if not loras:
        return None, None
    known = {k: r for k, r in ((k, recorded_recipe(p)) for k, p in loras.items()) if r in RECIPES}
    names = sorted(set(known.values()))
    if len(names) == 1:
        which = " and ".join(known) + (" LoRAs were" if len(known) > 1 else " LoRA was")
        return names[0], f"preset {names[0]}: the recipe the {which} trained with (--preset to choose another)"
    if len(names) > 1:
        return DEFAULT_RECIPE, (f"the subject LoRA was trained with the {known['subject']} recipe, the motion LoRA "
                                f"with {known['motion']}: preset {DEFAULT_RECIPE} (--preset to choose)")
    return DEFAULT_RECIPE, f"preset {DEFAULT_RECIPE}: the LoRAs record no recipe (--preset to choose another)"


def config_from_args(args):
    """Defaults <- preset (`preset_for`) <- YAML config <- explicit flags."""
    from ..config import apply_dict, read_yaml
    from ..sampling import PRESETS, GenerateConfig

    config = GenerateConfig()
    preset, _ = preset_for(args)
    if preset:
        config = apply_dict(config, PRESETS[preset], f"preset {preset}")
    if args.config:
        config = apply_dict(config, read_yaml(args.config), args.config)
    explicit = {k: getattr(args, k) for k in _FLAGS if getattr(args, k, None) is not None}
    return apply_dict(config, explicit, "flags").validate()


# flags of the Wan sampler that a ZeroScope model does not take (its LoRAs sit in disjoint layers; its
# scheduler is the model's own DDIM; the speed options were built and measured on Wan only)
_WAN_ONLY = ("scheduler", "shift", "subject_layers", "motion_layers", "lora_mode", "attention", "cache", "compile",
             "cfg_batch", "offload", "vae_tiling")


def unet_config_from_args(args):
    """The ZeroScope generation settings: U-Net defaults <- YAML config <- explicit flags."""
    from ..config import apply_dict, read_yaml
    from ..errors import SmraboothError
    from ..sampling_unet import UnetGenerateConfig

    if args.preset:
        raise SmraboothError(f"--preset {args.preset} is a Wan recipe's sampler; a ZeroScope model takes no preset")
    settings = read_yaml(args.config) if args.config else {}
    settings.update({k: getattr(args, k) for k in _FLAGS if getattr(args, k, None) is not None})
    wan_only = [k for k in _WAN_ONLY if k in settings]
    if wan_only:
        raise SmraboothError(f"--{wan_only[0].replace('_', '-')} applies to Wan models only; --model {args.model} is a "
                             f"ZeroScope U-Net (its subject and motion LoRAs already sit in different layers)")
    if "reference_t_point" in settings:  # the paper's step that t_point maps by noise level
        settings["paper_t_point"] = settings.pop("reference_t_point")
    return apply_dict(UnetGenerateConfig(), settings, "flags").validate()


def check_before_loading(args, config):
    """What can be wrong before any model loads: no prompt, an --out or --save-frames that cannot be written,
    a model that is not there. Returns the output path."""
    from ..errors import SmraboothError
    from ..validation import check_output_dir, check_output_file

    if not config.prompt:
        raise SmraboothError("--prompt is required (directly or in --config)")
    out = check_output_file("--out", args.out, suffixes=(".mp4",))
    if args.save_frames:
        check_output_dir("--save-frames", args.save_frames)
    check_model_args(args)
    return out


def write_outputs(frames, out, save_frames_dir, fps) -> None:
    from ..video import save_frames, write_video

    write_video(frames, out, fps=fps)
    if save_frames_dir:
        save_frames(frames, save_frames_dir)


def run_unet(args) -> int:
    from ..lora.unet import load_unet_lora
    from ..sampling_unet import generate_unet

    config = unet_config_from_args(args)
    out = check_before_loading(args, config)
    subject = load_unet_lora(args.subject_lora) if args.subject_lora else None
    motion = load_unet_lora(args.motion_lora) if args.motion_lora else None
    use_hub(args, args.model)
    pipe = load_pipeline_from_args(args)
    start = time.time()
    paths = {"subject": args.subject_lora, "motion": args.motion_lora}
    result = generate_unet(pipe, config, subject, motion, progress=True, lora_paths=paths)
    write_outputs(result.frames, out, args.save_frames, config.fps)
    s = result.schedule
    detail = (f"; subject {s.subject_early}->{s.subject_late} at step {s.t_point}, motion {s.motion}"
              if subject or motion else "")
    print(f"wrote {out} ({config.frames} frames, {config.width}x{config.height}, ZeroScope) in "
          f"{time.time() - start:.1f}s{detail}")
    return 0


def run(args) -> int:
    if backbone_of(args) == "unet":
        return run_unet(args)
    from ..data.tokens import missing_token_warnings
    from ..lora.files import load_lora, warn_if_other_kind
    from ..sampling import generate

    config = config_from_args(args)
    out = check_before_loading(args, config)
    subject = load_lora(args.subject_lora, "--subject-lora") if args.subject_lora else None
    motion = load_lora(args.motion_lora, "--motion-lora") if args.motion_lora else None
    warn_if_other_kind(subject, "subject", "--subject-lora")
    warn_if_other_kind(motion, "motion", "--motion-lora")
    tokens = {name: w.info.get("token") for name, w in (("subject", subject), ("motion", motion)) if w is not None}
    for line in missing_token_warnings(config.prompt, tokens):  # e.g. a LoRA trained on 'sks', prompted 'V*'
        print(line, file=sys.stderr)

    preset, why = preset_for(args)
    if why:
        print(why)
    use_hub(args, args.model)
    pipe = load_pipeline_from_args(args, text_encoder_device="cpu" if config.offload else None)
    start = time.time()
    paths = {"subject": args.subject_lora, "motion": args.motion_lora}
    result = generate(pipe, config, subject, motion, progress=True, lora_paths=paths)
    write_outputs(result.frames, out, args.save_frames, config.fps)
    s = result.schedule
    loras = [n for n, w in (("subject", subject), ("motion", motion)) if w is not None]
    detail = (f"; {config.injection} injection, subject {s.subject_early}->{s.subject_late} at step {s.t_point}, "
              f"motion {s.motion}") if loras else ""
    print(f"wrote {out} ({config.frames} frames, {config.width}x{config.height}, {config.fps:g} fps, "
          f"{f'preset {preset}' if preset else 'no preset'}) in {time.time() - start:.1f}s{detail}")
    return 0


__all__ = ["Path", "config_from_args", "preset_for", "register", "run"]
