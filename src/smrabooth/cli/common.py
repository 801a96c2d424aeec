"""Flags shared by the subcommands that load a model (any backbone: Wan2.1, Wan2.2, ZeroScope), and flags
generated from a settings dataclass."""

from __future__ import annotations

import argparse
import dataclasses
import typing


def add_model_args(parser, required: bool = True, training: bool = False) -> None:
    """The model flags; `training`: a trainer's, whose --vae-dtype is the run's setting (default the recipe's)."""
    from ..backbones import CHOICES
    from ..train.common import VAE_DTYPE_HELP, VAE_DTYPES

    parser.add_argument("--model", required=required,
                        help="diffusers-format text-to-video model, hub id or local folder: Wan2.1 "
                        "(Wan-AI/Wan2.1-T2V-1.3B-Diffusers), Wan2.2 A14B or TI2V-5B, or ZeroScope (the U-Net variant)")
    parser.add_argument("--backbone", default="auto", choices=list(CHOICES),
                        help="auto: what the folder's model_index.json holds (a hub id: by its name); wan: the Wan "
                        "form the folder holds; unet: zeroscope")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                        help="transformer and text-encoder dtype (auto: bf16 on a GPU, fp32 on the CPU)")
    if training:
        from ..recipes import RECIPES

        shown = ", ".join(f"{name} {r.motion.vae_dtype}" for name, r in RECIPES.items())
        parser.add_argument("--vae-dtype", default=None, choices=list(VAE_DTYPES),
                            help=f"{VAE_DTYPE_HELP} (default: the recipe's: {shown})")
    else:
        parser.add_argument("--vae-dtype", default=None, choices=["fp32", "bf16", "fp16"],
                            help="VAE dtype (default: fp32)")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--offline", action="store_true",
                        help="never contact the hub (also: HF_HUB_OFFLINE=1); local folders are always offline")


MODEL_FLAGS = ("model", "backbone", "dtype", "vae_dtype", "device", "offline")  # add_model_args's dests


def model_settings(args) -> dict:
    """The model flags of a parsed command (add_model_args): what loads the pipeline, apart from the settings."""
    return {k: getattr(args, k, None) for k in MODEL_FLAGS}


def model_argv(settings: dict) -> list[str]:
    """`model_settings` back as flags (those that are set)."""
    argv = []
    for key, value in settings.items():
        if value is True:
            argv.append(f"--{key.replace('_', '-')}")
        elif value not in (None, False):
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def backbone_of(args):
    """The `Backbone` of a command's --model (or its --config file's model) and --backbone."""
    from ..backbones import backbone_for_model
    from ..config import read_yaml

    model = getattr(args, "model", None)
    if not model and getattr(args, "config", None):
        model = read_yaml(args.config).get("model")
    return backbone_for_model(model or "", getattr(args, "backbone", "auto"))


def load_pipeline_from_args(args, text_encoder_device: str | None = None):
    """The pipeline of --model/--dtype/--device through its backbone; `text_encoder_device` 'cpu' keeps Wan's text
    encoder there (--offload: it visits the GPU only to encode)."""
    import time

    from ..logs import get_logger

    log = get_logger(__name__)
    backbone = backbone_of(args)
    vae_dtype = args.vae_dtype or "fp32"
    log.info(f"loading {args.model} as {backbone.title} (dtype {args.dtype}, VAE {vae_dtype}, device "
             f"{args.device or 'auto'})")
    start = time.time()
    pipe = backbone.load(args.model, dtype=args.dtype, vae_dtype=vae_dtype, device=args.device,
                         local_files_only=True if args.offline else None, text_encoder_device=text_encoder_device)
    log.info(f"loaded {backbone.title} in {time.time() - start:.1f}s")
    return pipe


def check_model_args(args) -> None:
    """The model flags, checked before anything loads: --model a folder of its backbone or a hub id, --device
    present."""
    from ..models.wan import check_model_source
    from ..validation import check_device

    check_model_source(args.model, "--model", folder_check=backbone_of(args).check_folder)
    check_device("--device", args.device)


def use_hub(args, *names) -> None:
    """Before loading models named by hub ids: offline with --offline, else probe the hub once (hub.py)."""
    from ..hub import check_hub_reachable, go_offline

    if getattr(args, "offline", False):
        go_offline()
    else:
        check_hub_reachable(names)


# ------------------------------------------------------------------ flags generated from a settings dataclass
def _flag(f: dataclasses.Field) -> str:
    return "--" + (f.metadata.get("flag") or f.name).replace("_", "-")


def _parse_optional(kind):
    """An argparse type for an `int | None` (or float) field: a number, or `none`."""
    def parse(text: str):
        return None if text.strip().lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _show(value) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    text = "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 80 else f"{text[:30]}..."  # a preset's negative prompt of 300 characters


def field_default(f: dataclasses.Field, defaults=None):
    """The default of field `f`: `defaults`'s value (an instance holding a command's own defaults), else the
    dataclass's (MISSING when it has none)."""
    if defaults is not None:
        return getattr(defaults, f.name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def default_text(f: dataclasses.Field, stage: str | None = None, defaults=None, presets: dict | None = None) -> str:
    """The default --help shows for field `f`: the recipes' values of `stage` where they differ, else the default,
    followed by the values `presets` ({name: {field: value}}) give it. '' for a setting a run must be given."""
    from ..recipes import RECIPES

    recipe_values = {name: getattr(getattr(r, stage), f.name) for name, r in RECIPES.items()
                     if stage and hasattr(getattr(r, stage), f.name)}
    if len(set(map(_show, recipe_values.values()))) > 1:
        return "the recipe's: " + ", ".join(f"{n} {_show(v)}" for n, v in recipe_values.items())
    value = field_default(f, defaults)
    text = "" if value is dataclasses.MISSING else _show(value)
    preset_values = {name: p[f.name] for name, p in (presets or {}).items() if f.name in p}
    if any(_show(v) != text for v in preset_values.values()):  # where a preset changes the default
        shown = set(map(_show, preset_values.values()))
        text += ("; " if text else "") + ("presets: " + shown.pop() if len(shown) == 1 else
                                          "preset " + ", ".join(f"{n} {_show(v)}" for n, v in preset_values.items()))
    return text


def _group(parser, title: str | None):
    """The argument group `title` of `parser` (made on first use); the parser itself for None."""
    if title is None:
        return parser
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


def add_config_arguments(parser, cls, stage: str | None = None, shared_help: dict | None = None,
                         skip=(), defaults=None, presets: dict | None = None) -> None:
    """One flag per field of the settings dataclass `cls` (fields made with `setting(..., cli=False)` and dicts
    excepted): booleans as --flag/--no-flag, tuples as comma lists, `X | None` taking `none`. Help comes from
    the field (config.setting) or `shared_help`; the default shown is the recipes' value of the `stage`
    ('subject', 'motion') where the field is a recipe's, else `defaults`'s (an instance of `cls` holding the
    command's defaults, e.g. the sprites demo's) or the dataclass's, with the values of `presets` (generate
    --preset) beside it. `skip`: field names that have a flag already. Flags left out are absent from the parsed
    namespace (argparse.SUPPRESS), so `config_from_args` tells them from a file's values. The parser keeps its
    sources in `parser.settings_sources` (tests walk every command's flags against them)."""
    hints = typing.get_type_hints(cls)
    parser.settings_sources = [*getattr(parser, "settings_sources", []), (cls, defaults, stage, presets)]
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if not f.metadata.get("cli", True) or hint is dict or f.name in skip:
            continue
        help = f.metadata.get("help") or (shared_help or {}).get(f.name, "")
        default = default_text(f, stage, defaults, presets)
        shown = f" (default: {default})" if default else ""  # '' for the settings a run must be given
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": f"{help}{shown}".lstrip()}
        if f.metadata.get("required"):
            kwargs["required"] = True
        target = _group(parser, f.metadata.get("group"))
        if hint is bool:
            target.add_argument(_flag(f), action=argparse.BooleanOptionalAction, **kwargs)
            continue
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = type(None) in typing.get_args(hint)
        base = args[0] if optional else hint
        if base in (int, float):
            kwargs["type"] = _parse_optional(base) if optional else base
        if typing.get_origin(base) is tuple:
            kwargs["metavar"] = "A,B,..."
        if f.metadata.get("metavar"):
            kwargs["metavar"] = f.metadata["metavar"]
        if f.metadata.get("choices"):
            kwargs["choices"] = list(f.metadata["choices"])
        target.add_argument(_flag(f), **kwargs)


def field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def settings_given(cls, args) -> tuple[dict, dict, str | None]:
    """The settings of `cls` a command was given: (those of its --config file, those of its flags, the file's
    path). A flag left out is absent (add_config_arguments's SUPPRESS); a command's own flag named as a field
    without a flag (`setting(cli=False)`, e.g. the sprites demo's --out) is not that setting; --model
    and --vae-dtype (add_model_args: None when not given) count only when given."""
    from ..config import read_yaml

    names = {f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", True)}
    flags = {k: v for k, v in vars(args).items() if k in names and k not in ("model", "vae_dtype")}
    for name in ("model", "vae_dtype"):  # model flags that are also settings
        if name in field_names(cls) and getattr(args, name, None):
            flags[name] = getattr(args, name)
    path = getattr(args, "config", None)
    return (read_yaml(path) if path else {}), flags, path


def config_from_args(cls, args, required: tuple[str, ...] = (), base=None):
    """The settings of `cls` from, in order of precedence: the flags given, --config YAML, then `base` (the
    command's defaults: e.g. generate's preset, the sprites demo's settings); without `base`, the recipe (the
    flag's, else the file's, else the default) where `cls.from_recipe` builds one, else `cls`'s own defaults.
    Validated. `required`: fields that must be set by a flag or the file."""
    from ..config import apply_dict
    from ..errors import SmraboothError
    from ..recipes import DEFAULT_RECIPE

    from_file, flags, path = settings_given(cls, args)
    if base is None and hasattr(cls, "from_recipe"):
        recipe = flags.get("recipe") or from_file.get("recipe") or DEFAULT_RECIPE
        if not isinstance(recipe, str):
            from ..readers import short_repr

            raise SmraboothError(f"{path}: recipe: {short_repr(recipe)} is not a recipe name")
        base = cls.from_recipe(recipe)
    config = apply_dict(cls() if base is None else base, from_file, str(path))
    config = apply_dict(config, flags, "flags")
    for name in required:
        if not getattr(config, name):
            raise SmraboothError(f"--{name.replace('_', '-')} is required (as a flag or in --config)")
    return config.validate()


def refuse_other_backbones(given, backbone, config_class_of, hint: str = "") -> None:
    """A setting (`given`: field names from flags or a file) that only another backbone's settings class has
    (`config_class_of(backbone)`: the trainer's or the sampler's) is one line naming the backbones it applies to."""
    from ..backbones import BACKBONES
    from ..errors import SmraboothError

    own = field_names(config_class_of(backbone))
    for name in sorted(set(given) - own):
        owners = sorted({b.family_title for b in BACKBONES.values() if name in field_names(config_class_of(b))})
        if owners:
            raise SmraboothError(f"--{name.replace('_', '-')} applies to {' and '.join(owners)} models only; the "
                                 f"model is a {backbone.title}{hint}")
