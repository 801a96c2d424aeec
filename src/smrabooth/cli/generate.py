"""`smrabooth generate`: a video from a prompt, with optional subject and motion LoRAs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..recipes import DEFAULT_RECIPE, RECIPES
from .common import add_config_arguments, add_model_args, check_model_args, load_pipeline_from_args, use_hub


def register(subparsers) -> None:
    from ..sampling import PRESETS, GenerateConfig

    p = subparsers.add_parser(
        "generate",
        help="generate a video (optionally with subject/motion LoRAs)",
        description="Generate a video with a text-to-video model (Wan2.1, Wan2.2 A14B or TI2V-5B, ZeroScope) and "
        "optional subject and motion LoRAs, combined by sparse LoRA injection (docs/method.md stage 3). Every setting "
        "is a flag and a key of a --config YAML file (docs/generation.md); unset ones come from --config, then "
        "--preset (Wan: by default the preset of the recipe the LoRAs were trained with, else official; without "
        "LoRAs none), then the stock pipeline's defaults (ZeroScope: its own, docs/unet.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_args(p)
    p.add_argument("--subject-lora", nargs="+", metavar="FILE",
                   help="subject LoRA (.safetensors; diffusers, ComfyUI or DiffSynth keys); on Wan2.2 A14B one file "
                   "per expert (a training run's subject_lora_high/_low.safetensors)")
    p.add_argument("--motion-lora", nargs="+", metavar="FILE", help="motion LoRA (.safetensors), as --subject-lora")
    # ZeroScope's settings are a subset of Wan's (their defaults its own): one flag each, from GenerateConfig
    add_config_arguments(p, GenerateConfig, presets=PRESETS)
    p.add_argument("--preset", choices=list(RECIPES),
                   help="a recipe's inference settings (default: the recipe the LoRAs record, else "
                   f"{DEFAULT_RECIPE}; without LoRAs, none: stock WanPipeline's)")
    p.add_argument("--config", help="YAML file of generation settings, any of the flags above as keys (prompt: ..., "
                   "steps: 30); flags override it, and it overrides --preset")
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
    explicit flags (cli/common.py config_from_args); a setting of another backbone's sampler is refused in one
    line."""
    from ..sampling import GenerateConfig
    from .common import backbone_of, refuse_other_backbones, settings_given
    from .common import config_from_args as settings_from

    backbone = backbone or backbone_of(args)
    from_file, flags, _ = settings_given(GenerateConfig, args)  # Wan's fields: every backbone's (and more)
    refuse_other_backbones([*from_file, *flags], backbone, lambda b: b.generate_config_class,
                           f" model (--model {args.model})")
    preset, _ = preset_for(args, backbone)
    return backbone.check_generate(settings_from(backbone.generate_config_class, args,
                                                 base=backbone.generate_defaults(preset)))


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
