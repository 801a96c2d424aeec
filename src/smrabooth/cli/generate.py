"""`smrabooth generate`: a video from a prompt, with optional subject and motion LoRAs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..recipes import DEFAULT_RECIPE, PAPER, RECIPES
from .common import add_model_args, check_model_args, load_pipeline_from_args, use_hub

_P = PAPER.sampler

# flag -> GenerateConfig field; flags left unset fall back to the preset, then the defaults
_FLAGS = {
    "prompt": str, "negative_prompt": str, "frames": int, "height": int, "width": int, "steps": int,
    "guidance": float, "seed": int, "scheduler": str, "shift": float, "t_point": int, "reference_t_point": int,
    "subject_scale_early": float, "subject_scale": float, "motion_scale": float, "injection": str,
    "subject_layers": str, "motion_layers": str, "fps": float, "lora_mode": str, "attention": str, "cache": str,
    "compile": bool, "cfg_batch": bool, "offload": bool, "vae_tiling": bool, "guidance_2": float,
    "subject_experts": str, "motion_experts": str,
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate a video (optionally with subject/motion LoRAs)",
        description="Generate a video with a text-to-video model (Wan2.1, Wan2.2 A14B or TI2V-5B, ZeroScope) and "
        "optional subject and motion LoRAs, combined by sparse LoRA injection (docs/method.md stage 3). Unset flags "
        "come from --config, then --preset (Wan: by default the preset of the recipe the LoRAs were trained with, "
        "else official; without LoRAs none), then the stock pipeline's defaults.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_args(p)
    p.add_argument("--subject-lora", nargs="+", metavar="FILE",
                   help="subject LoRA (.safetensors; diffusers, ComfyUI or DiffSynth keys); on Wan2.2 A14B one file "
                   "per expert (a training run's subject_lora_high/_low.safetensors)")
    p.add_argument("--motion-lora", nargs="+", metavar="FILE", help="motion LoRA (.safetensors), as --subject-lora")
    p.add_argument("--prompt", help="text prompt, e.g. 'a V* dog doing the S* dribble on a beach'")
    p.add_argument("--negative-prompt", help="negative prompt (default: empty, as WanPipeline)")
    p.add_argument("--frames", type=int, help=f"number of frames, 4k+1 (default 81; paper {_P.frames})")
    p.add_argument("--height", type=int, help=f"height in pixels, multiple of 16 (default 480; paper {_P.height})")
    p.add_argument("--width", type=int, help=f"width in pixels, multiple of 16 (default 832; paper {_P.width})")
    p.add_argument("--steps", type=int, help=f"denoising steps (default 50; paper {_P.steps})")
    p.add_argument("--guidance", type=float, help=f"classifier-free guidance scale (default 5; paper {_P.guidance:g})")
    p.add_argument("--guidance-2", type=float,
                   help="Wan2.2 A14B: the low-noise expert's guidance scale (default: --guidance, as WanPipeline)")
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
    from ..sampling import EXPERT_PLACEMENTS

    for kind in ("subject", "motion"):
        p.add_argument(f"--{kind}-experts", choices=list(EXPERT_PLACEMENTS),
                       help=f"Wan2.2 A14B: the expert(s) the {kind} LoRA goes into; trained (default): the one each "
                       "file was trained for, both for a file that records none (docs/method.md)")
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


def preset_for(args, backbone=None) -> tuple[str | None, str | None]:
    """The preset a generation uses, and a line saying why when the user did not pick it (None: nothing to say).

    --preset wins. Without it: no LoRA, no preset (the stock pipeline's defaults, the baseline the paper compares
    with); with LoRAs, the recipe they record (a LoRA file's metadata: the recipe it was trained with); LoRAs
    that record two different recipes, or none, get the default recipe's. A backbone whose sampler takes no
    recipe preset (ZeroScope) gets none unless --preset asks (and is refused)."""
    from ..lora.files import recorded_recipe
    from .common import backbone_of

    if getattr(args, "preset", None):
        return args.preset, None
    if not (backbone or backbone_of(args)).takes_presets:
        return None, None
    loras = {k: p for k, p in (("subject", getattr(args, "subject_lora", None)),
                               ("motion", getattr(args, "motion_lora", None))) if p}
    if not loras:
        return None, None
    recorded = {k: {recorded_recipe(p) for p in (ps if isinstance(ps, (list, tuple)) else [ps])} - {None}
                for k, ps in loras.items()}  # one file, or one per Wan2.2 A14B expert
    known = {k: next(iter(r)) for k, r in recorded.items() if len(r) == 1 and next(iter(r)) in RECIPES}
    names = sorted(set(known.values()))
    if len(names) == 1:
        which = " and ".join(known) + (" LoRAs were" if len(known) > 1 else " LoRA was")
        return names[0], f"preset {names[0]}: the recipe the {which} trained with (--preset to choose another)"
    if len(names) > 1:
        return DEFAULT_RECIPE, (f"the subject LoRA was trained with the {known['subject']} recipe, the motion LoRA "
                                f"with {known['motion']}: preset {DEFAULT_RECIPE} (--preset to choose)")
    return DEFAULT_RECIPE, f"preset {DEFAULT_RECIPE}: the LoRAs record no recipe (--preset to choose another)"


def config_from_args(args, backbone=None):
    """The generation settings of the model's backbone: its defaults <- preset (`preset_for`) <- YAML config <-
    explicit flags; a setting of another backbone's sampler is refused in one line."""
    import dataclasses

    from ..backbones import BACKBONES
    from ..config import read_yaml
    from ..errors import SmraboothError
    from .common import backbone_of

    backbone = backbone or backbone_of(args)
    settings = read_yaml(args.config) if args.config else {}
    settings.update({k: getattr(args, k) for k in _FLAGS if getattr(args, k, None) is not None})
    own = {f.name for f in dataclasses.fields(backbone.generate_config_class)}
    for key in settings:
        others = sorted({b.family_title for b in BACKBONES.values()
                         if key in {f.name for f in dataclasses.fields(b.generate_config_class)}})
        if key not in own and others:
            raise SmraboothError(f"--{key.replace('_', '-')} applies to {' and '.join(others)} models only; --model "
                                 f"{args.model} is a {backbone.title} model")
    preset, _ = preset_for(args, backbone)
    return backbone.generate_config(settings, preset, args.config or "flags")


def check_before_loading(args, config):
    """What can be wrong before any model loads: no prompt, an --out or --save-frames that cannot be written,
    a model that is not there. Returns the output path."""
    from ..errors import SmraboothError
    from ..validation import check_output_dir, check_output_file

    if not config.prompt:
        raise SmraboothError("--prompt is required (directly or in --config)")
    out = check_output_file("--out", args.out, suffixes=(".mp4",))
    if args.save_frames:
        from ..video import check_frames_folder

        check_output_dir("--save-frames", args.save_frames)
        check_frames_folder(args.save_frames)
    check_model_args(args)
    return out


def write_outputs(frames, out, save_frames_dir, fps) -> None:
    from ..video import save_frames, write_video

    write_video(frames, out, fps=fps)
    if save_frames_dir:
        save_frames(frames, save_frames_dir)


def run(args) -> int:
    from ..data.tokens import missing_token_warnings
    from ..lora.files import warn_if_other_kind
    from ..sampling import generate
    from .common import backbone_of

    backbone = backbone_of(args)
    config = config_from_args(args, backbone)
    out = check_before_loading(args, config)
    loras = {}
    for kind in ("subject", "motion"):
        paths = getattr(args, f"{kind}_lora") or []
        files = [backbone.read_lora(p, f"--{kind}-lora") for p in paths]
        for weights in files:
            warn_if_other_kind(weights, kind, f"--{kind}-lora")
        if files:
            loras[kind] = files
    backbone.check_lora_files(config, loras, {k: getattr(args, f"{k}_lora") for k in loras})  # before it loads
    tokens = {name: files[0].info.get("token") for name, files in loras.items()}
    for line in missing_token_warnings(config.prompt, tokens):  # e.g. a LoRA trained on 'sks', prompted 'V*'
        print(line, file=sys.stderr)

    preset, why = preset_for(args, backbone)
    if why:
        print(why)
    use_hub(args, args.model)
    pipe = load_pipeline_from_args(args, text_encoder_device="cpu" if getattr(config, "offload", False) else None)
    start = time.time()
    paths = {"subject": args.subject_lora, "motion": args.motion_lora}
    result = generate(pipe, config, loras.get("subject"), loras.get("motion"), progress=True, lora_paths=paths)
    write_outputs(result.frames, out, args.save_frames, config.fps)
    s = result.schedule
    detail = (f"; {config.injection} injection, subject {s.subject_early}->{s.subject_late} at step {s.t_point}, "
              f"motion {s.motion}") if loras else ""
    print(f"wrote {out} ({config.frames} frames, {config.width}x{config.height}, {config.fps:g} fps, "
          f"{f'preset {preset}' if preset else 'no preset'}) with {backbone.title} in {time.time() - start:.1f}s"
          f"{detail}")
    return 0


__all__ = ["Path", "config_from_args", "preset_for", "register", "run"]
