"""`smrabooth train-subject` (stage 1) and `smrabooth train-motion` (stage 2)."""

from __future__ import annotations

import os

from .common import (
    add_config_arguments,
    add_model_args,
    backbone_of,
    check_model_args,
    config_from_args,
    load_pipeline_from_args,
    use_hub,
)


def add_run_args(p) -> None:
    """Flags of a training call that are not settings of the run (config.yaml holds those)."""
    p.add_argument("--config", help="YAML file of settings (a run's config.yaml works); flags override it, and it "
                   "overrides the recipe")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="delete the run in --out and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    from ..train.common import TRAIN_SETTING_HELP
    from ..train.motion import MotionTrainConfig
    from ..train.subject import SubjectTrainConfig
    from ..train.unet import UnetMotionConfig, UnetSubjectConfig

    unet_note = (" On a ZeroScope model (the U-Net variant, docs/unet.md) the defaults are the U-Net's "
                 "(recipes.UNET) and Wan-only settings are refused.")

    p = subparsers.add_parser(
        "train-subject", help="train a subject LoRA with SuRA (stage 1)",
        description="Train a subject LoRA on a few images with the masked flow-matching loss plus Subject "
        "Representation Alignment (docs/method.md stage 1). Every setting is a flag; unset ones come from "
        "--config, then from --recipe." + unet_note)
    add_model_args(p, required=False)
    add_config_arguments(p, SubjectTrainConfig, "subject", TRAIN_SETTING_HELP)
    add_config_arguments(p, UnetSubjectConfig, skip=_field_names(SubjectTrainConfig))  # the U-Net's own: RAA
    add_run_args(p)
    p.set_defaults(func=run_subject)

    p = subparsers.add_parser(
        "train-motion", help="train a motion LoRA with MoRA (stage 2)",
        description="Train a motion LoRA on one or more clips with flow matching on the whole video plus Motion "
        "Representation Alignment through SEA-RAFT (docs/method.md stage 2). Every setting is a flag; unset "
        "ones come from --config, then from --recipe." + unet_note)
    add_model_args(p, required=False)
    add_config_arguments(p, MotionTrainConfig, "motion", TRAIN_SETTING_HELP)
    add_config_arguments(p, UnetMotionConfig, skip=_field_names(MotionTrainConfig))
    add_run_args(p)
    p.set_defaults(func=run_motion)


REQUIRED = ("model", "data", "out")


def _field_names(cls) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)}


def _unet_config(cls, wan_cls, args):
    """The U-Net run's settings; a Wan-only setting given as a flag is refused in one line."""
    from ..errors import SmraboothError

    wan_only = sorted(set(vars(args)) & (_field_names(wan_cls) - _field_names(cls)))
    if wan_only:
        raise SmraboothError(f"--{wan_only[0].replace('_', '-')} applies to Wan models only; the model is a "
                             f"ZeroScope U-Net (docs/unet.md lists its settings)")
    return config_from_args(cls, args, REQUIRED)


def _dinov2_loader(cfg, args, pipe):
    """DINOv2, loaded only when some image's features are not cached yet (a first run)."""
    import torch

    from ..models.dinov2 import load_dinov2

    def encoder():
        dtype = torch.bfloat16 if pipe._execution_device.type == "cuda" else torch.float32
        return load_dinov2(cfg.encoder, device=pipe._execution_device, dtype=dtype,
                           local_files_only=True if args.offline or os.path.isdir(cfg.encoder) else None)

    return encoder


def run_unet_subject(args) -> int:
    from ..train.subject import SubjectTrainConfig
    from ..train.unet import UnetSubjectConfig, train_unet_subject

    cfg = _unet_config(UnetSubjectConfig, SubjectTrainConfig, args)
    args.model = cfg.model
    check_model_args(args)
    use_hub(args, cfg.model, cfg.encoder if cfg.use_sura else None)
    pipe = load_pipeline_from_args(args)
    encoder = _dinov2_loader(cfg, args, pipe) if cfg.use_sura else None
    model_id = os.path.abspath(cfg.model) if os.path.isdir(cfg.model) else cfg.model
    final = train_unet_subject(cfg, pipe, encoder, model_id=model_id, resume=args.resume, overwrite=args.overwrite,
                               progress=not args.quiet, explicit=given_fields(args, UnetSubjectConfig))
    print(f"wrote {final}")
    return 0


def run_unet_motion(args) -> int:
    from ..models.searaft import load_searaft
    from ..train.motion import MotionTrainConfig
    from ..train.unet import UnetMotionConfig, train_unet_motion

    cfg = _unet_config(UnetMotionConfig, MotionTrainConfig, args)
    args.model = cfg.model
    check_model_args(args)
    use_hub(args, cfg.model, cfg.flow_model if cfg.use_mora else None)
    pipe = load_pipeline_from_args(args)
    flow_id = os.path.abspath(cfg.flow_model) if os.path.exists(cfg.flow_model) else cfg.flow_model
    flow_model = None
    if cfg.use_mora:
        flow_model = load_searaft(cfg.flow_model, device=pipe._execution_device,
                                  local_files_only=True if args.offline else None)
    model_id = os.path.abspath(cfg.model) if os.path.isdir(cfg.model) else cfg.model
    final = train_unet_motion(cfg, pipe, flow_model, model_id=model_id, flow_id=flow_id, resume=args.resume,
                              overwrite=args.overwrite, progress=not args.quiet,
                              explicit=given_fields(args, UnetMotionConfig))
    print(f"wrote {final}")
    return 0


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


def run_subject(args) -> int:
    import torch

    from ..models.dinov2 import load_dinov2
    from ..train.common import check_run_dir
    from ..train.subject import FINAL_NAME as SUBJECT_FINAL
    from ..train.subject import SubjectTrainConfig, read_subject_items, train_subject
    from ..train.unet import UnetSubjectConfig

    if backbone_of(args) == "unet":
        return run_unet_subject(args)
    unet_only = sorted(set(vars(args)) & (_field_names(UnetSubjectConfig) - _field_names(SubjectTrainConfig)))
    if unet_only:
        from ..errors import SmraboothError

        raise SmraboothError(f"--{unet_only[0].replace('_', '-')} applies to ZeroScope (U-Net) models only")
    cfg = config_from_args(SubjectTrainConfig, args, REQUIRED)
    args.model = cfg.model
    if int(os.environ.get("RANK", "0")) == 0:  # under a launcher, the main process checks (and locks) the folder
        check_run_dir(cfg.out, SUBJECT_FINAL, resume=args.resume, overwrite=args.overwrite, cfg=cfg,
                      explicit=given_fields(args, SubjectTrainConfig), inputs={"--config": args.config})
        read_subject_items(cfg)  # the data read whole before any model loads
    check_model_args(args)
    use_hub(args, cfg.model, cfg.encoder if cfg.use_sura else None)
    from ..train.distributed import process_device

    args.device = process_device(args.device)  # under a launcher: this process's GPU
    pipe = load_pipeline_from_args(args)
    encoder = None
    if cfg.use_sura:
        def encoder():  # loaded only if some image's DINOv2 features are not cached yet (a first run)
            dtype = torch.bfloat16 if pipe._execution_device.type == "cuda" else torch.float32
            return load_dinov2(cfg.encoder, device=pipe._execution_device, dtype=dtype,
                               local_files_only=True if args.offline or os.path.isdir(cfg.encoder) else None)
    model_id = os.path.abspath(cfg.model) if os.path.isdir(cfg.model) else cfg.model
    final = train_subject(cfg, pipe, encoder, model_id=model_id, resume=args.resume, overwrite=args.overwrite,
                          progress=not args.quiet, explicit=given_fields(args, SubjectTrainConfig))
    print(f"wrote {final}")
    return 0


def run_motion(args) -> int:
    from ..data.folders import read_motion_folder
    from ..models.searaft import load_searaft
    from ..train.common import check_run_dir
    from ..train.motion import FINAL_NAME as MOTION_FINAL
    from ..train.motion import MotionTrainConfig, train_motion

    if backbone_of(args) == "unet":
        return run_unet_motion(args)
    cfg = config_from_args(MotionTrainConfig, args, REQUIRED)
    args.model = cfg.model
    if int(os.environ.get("RANK", "0")) == 0:  # under a launcher, the main process checks (and locks) the folder
        check_run_dir(cfg.out, MOTION_FINAL, resume=args.resume, overwrite=args.overwrite, cfg=cfg,
                      explicit=given_fields(args, MotionTrainConfig), inputs={"--config": args.config})
        read_motion_folder(cfg.data)  # the data's table read before any model loads
    check_model_args(args)
    use_hub(args, cfg.model, cfg.flow_model if cfg.use_mora else None)
    from ..train.distributed import process_device

    args.device = process_device(args.device)  # under a launcher: this process's GPU
    pipe = load_pipeline_from_args(args)
    flow_model = None
    flow_id = os.path.abspath(cfg.flow_model) if os.path.exists(cfg.flow_model) else cfg.flow_model
    if cfg.use_mora:
        flow_model = load_searaft(cfg.flow_model, device=pipe._execution_device,
                                  local_files_only=True if args.offline else None)
    model_id = os.path.abspath(cfg.model) if os.path.isdir(cfg.model) else cfg.model
    final = train_motion(cfg, pipe, flow_model, model_id=model_id, flow_id=flow_id, resume=args.resume,
                         overwrite=args.overwrite, progress=not args.quiet,
                         explicit=given_fields(args, MotionTrainConfig))
    print(f"wrote {final}")
    return 0
