"""`smrabooth train-subject` (stage 1) and `smrabooth train-motion` (stage 2)."""

from __future__ import annotations

import os

from .common import (
    add_config_arguments,
    add_model_args,
    backbone_of,
    check_model_args,
    config_from_args,
    field_names,
    load_pipeline_from_args,
    refuse_other_backbones,
    use_hub,
)

KINDS = ("subject", "motion")


def add_run_args(p) -> None:
    """Flags of a training call that are not settings of the run (config.yaml holds those)."""
    p.add_argument("--config", help="YAML file of settings (a run's config.yaml works); flags override it, and it "
                   "overrides the recipe")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="delete the run in --out and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def config_classes(kind: str) -> list[type]:
    """The settings classes of `kind`'s trainers over every backbone, Wan's first (one per family)."""
    from ..backbones import BACKBONES

    return list(dict.fromkeys(b.train_config_class(kind) for b in BACKBONES.values()))


def register(subparsers) -> None:
    from ..train.common import TRAIN_SETTING_HELP

    about = {
        "subject": ("train a subject LoRA with SuRA (stage 1)",
                    ("Train a subject LoRA on a few images with the masked flow-matching loss plus Subject "
                     "Representation Alignment (docs/method.md stage 1).")),
        "motion": ("train a motion LoRA with MoRA (stage 2)",
                   ("Train a motion LoRA on one or more clips with flow matching on the whole video plus Motion "
                    "Representation Alignment through SEA-RAFT (docs/method.md stage 2).")),
    }
    for kind in KINDS:
        short, long = about[kind]
        p = subparsers.add_parser(
            f"train-{kind}", help=short,
            description=long + " Every setting is a flag; unset ones come from --config, then from --recipe. The "
            "model's backbone (Wan2.1, Wan2.2 A14B or TI2V-5B, ZeroScope) picks the trainer; on ZeroScope (the U-Net "
            "variant, docs/unet.md) the defaults are the U-Net's (recipes.UNET) and Wan-only settings are refused.")
        add_model_args(p, required=False, training=True)
        seen: set[str] = set()
        for i, cls in enumerate(config_classes(kind)):
            add_config_arguments(p, cls, kind if i == 0 else None, TRAIN_SETTING_HELP, skip=seen)
            seen |= field_names(cls)
        add_run_args(p)
        p.set_defaults(func=run_subject if kind == "subject" else run_motion, kind=kind)


REQUIRED = ("model", "data", "out")


def _config(backbone, kind: str, args):
    """The run's settings for the model's backbone; a setting only another backbone's trainer has, given as a
    flag, is refused in one line."""
    refuse_other_backbones(vars(args), backbone, lambda b: b.train_config_class(kind),
                           " model (docs/unet.md lists the U-Net's settings)")
    return config_from_args(backbone.train_config_class(kind), args, REQUIRED)


def resolve_train_config(kind: str, args):
    """The settings a `train-<kind>` call runs with (recipe <- --config <- flags, for the backbone of its model)."""
    cfg = _config(backbone_of(args), kind, args)
    args.model = cfg.model  # a model named only in --config: its backbone decides from here on
    return cfg


def _dinov2_loader(cfg, args, pipe):
    """DINOv2, loaded only when some image's features are not cached yet (a first run)."""
    import torch

    from ..models.dinov2 import load_dinov2

    def encoder():
        dtype = torch.bfloat16 if pipe._execution_device.type == "cuda" else torch.float32
        return load_dinov2(cfg.encoder, device=pipe._execution_device, dtype=dtype,
                           local_files_only=True if args.offline or os.path.isdir(cfg.encoder) else None)

    return encoder


def given_fields(args, config_class) -> set[str]:
    """The settings (fields of `config_class`) the user asked for: the flags written on the command line (found
    by main's second parse, defaults suppressed: --rank -> rank, --no-sura -> use_sura) and the keys of --config.
    A resumed run refuses to change any of them but `steps`."""
    import dataclasses

    from ..config import read_yaml

    fields = {f.name for f in dataclasses.fields(config_class)}
    out = set(read_yaml(args.config)) & fields if getattr(args, "config", None) else set()
    for dest in getattr(args, "given", set()):
        rest = dest[3:] if dest.startswith("no_") else None
        for name in (dest, f"use_{rest}" if rest else None, rest):
            if name in fields:
                out.add(name)
                break
    return out


def run_training(kind: str, args) -> int:
    """`train-subject` / `train-motion` on any backbone: settings, the run folder and the model flags checked
    before anything loads, then the backbone's trainer with its frozen helper model (DINOv2 for SuRA, SEA-RAFT
    for MoRA)."""
    from ..train.common import check_run_dir
    from ..train.distributed import process_device

    cfg = resolve_train_config(kind, args)
    backbone = backbone_of(args)
    explicit = given_fields(args, type(cfg))
    backbone.check_train_config(kind, cfg)  # e.g. an --expert this model does not have
    finals = backbone.final_names(kind, cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under a launcher, the main process checks (and locks) the folder
        check_run_dir(cfg.out, finals[0], resume=args.resume, overwrite=args.overwrite, cfg=cfg, explicit=explicit,
                      inputs={"--config": args.config})
        if kind == "subject":  # the data read whole before any model loads
            from ..train.subject import read_subject_items

            read_subject_items(cfg)
        else:
            from ..data.folders import read_motion_folder

            read_motion_folder(cfg.data, check_files=True)  # each clip's first frame: decodes, is large enough
    check_model_args(args)
    helper = cfg.encoder if kind == "subject" and cfg.use_sura else \
        cfg.flow_model if kind == "motion" and cfg.use_mora else None
    use_hub(args, cfg.model, helper)
    args.device = process_device(args.device)  # under a launcher: this process's GPU
    if hasattr(cfg, "vae_dtype"):  # loaded as it trains (the loaders read auto as the transformer's dtype)
        args.vae_dtype = cfg.vae_dtype
    pipe = load_pipeline_from_args(args)
    model_id = os.path.abspath(cfg.model) if os.path.isdir(cfg.model) else cfg.model
    common = dict(model_id=model_id, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                  explicit=explicit)
    trainer = backbone.trainer(kind)
    if kind == "subject":
        encoder = _dinov2_loader(cfg, args, pipe) if cfg.use_sura else None
        trainer(cfg, pipe, encoder, **common)
    else:
        from ..models.searaft import load_searaft

        flow_id = os.path.abspath(cfg.flow_model) if os.path.exists(cfg.flow_model) else cfg.flow_model
        flow_model = None
        if cfg.use_mora:
            flow_model = load_searaft(cfg.flow_model, device=pipe._execution_device,
                                      local_files_only=True if args.offline else None)
        trainer(cfg, pipe, flow_model, flow_id=flow_id, **common)
    for name in finals:
        print(f"wrote {os.path.join(cfg.out, name)}")
    return 0


def run_subject(args) -> int:
    return run_training("subject", args)


def run_motion(args) -> int:
    return run_training("motion", args)
