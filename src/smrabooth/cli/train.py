"""`smrabooth train-subject` (stage 1) and `smrabooth train-motion` (stage 2)."""

from __future__ import annotations

import argparse
import os

from ..recipes import PAPER
from .common import add_model_args, check_model_args, load_pipeline_from_args, use_hub

_S, _M = PAPER.subject, PAPER.motion


def add_run_args(p) -> None:
    """Flags every trainer has: run folder, resume, checkpoints, validation."""
    p.add_argument("--out", required=True, help="run folder (config.yaml, log.jsonl, checkpoints/, the LoRA)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="delete the run in --out and start over")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--validate-every", type=int, default=0, help="render a validation video every N steps")
    p.add_argument("--validation-prompt", help="prompt of the validation videos")
    p.add_argument("--no-gradient-checkpointing", action="store_true", help="faster, more memory")
    p.add_argument("--compile", action="store_true", help="torch.compile the transformer blocks (GPU)")
    p.add_argument("--mixed-precision", default="auto", choices=["auto", "bf16", "no"],
                   help="auto: bf16 autocast on CUDA; no: no autocast (bf16 weights, fp32 LoRA math)")
    p.add_argument("--cache-dir", help="where precomputed latents/features go (default ~/.cache/smrabooth)")
    p.add_argument("--save-dtype", default="bf16", choices=["bf16", "fp32", "fp16"], help="dtype of the LoRA file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-subject", help="train a subject LoRA with SuRA (stage 1)",
        description="Train a subject LoRA on a few images with the masked flow-matching loss plus Subject "
        "Representation Alignment (docs/method.md stage 1).", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(p)
    p.add_argument("--data", required=True,
                   help="subject folder: images/, masks/, metadata.csv (file_name,text; or the authors' "
                   "video,mask,prompt); or a plain image folder with --name")
    p.add_argument("--name", help="subject name for a plain image folder (captions: 'a picture of V* NAME')")
    p.add_argument("--steps", type=int, default=_S.steps)
    p.add_argument("--rank", type=int, default=_S.rank)
    p.add_argument("--alpha", type=float, default=_S.alpha)
    p.add_argument("--lr", type=float, default=_S.lr)
    p.add_argument("--resolution", type=int, default=_S.resolution, help="square training size (multiple of 16)")
    p.add_argument("--encoder", default=_S.encoder, help="DINOv2 hub id or local folder")
    p.add_argument("--sura-weight", type=float, default=_S.sura_weight, help="lambda of L_SuRA")
    p.add_argument("--sura-layer", type=int, default=_S.sura_layer, help="0-based block whose output SuRA aligns")
    p.add_argument("--projector-width", type=int, default=_S.projector_width,
                   help="hidden width of SuRA's MLP projector (REPA's; smaller for small models)")
    p.add_argument("--no-sura", action="store_true", help="the paper's 'w/o SuRA' ablation")
    p.add_argument("--no-mask", action="store_true", help="plain flow loss on the whole image (no masks needed)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="--compile with CUDA graphs: about 2x faster steps on a GPU (the step is launch-bound)")
    add_run_args(p)
    p.set_defaults(func=run_subject)

    p = subparsers.add_parser(
        "train-motion", help="train a motion LoRA with MoRA (stage 2)",
        description="Train a motion LoRA on one or more clips with flow matching on the whole video plus Motion "
        "Representation Alignment through SEA-RAFT (docs/method.md stage 2).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(p)
    p.add_argument("--data", required=True,
                   help="motion folder: *.mp4 + metadata.csv (file_name,text; or the authors' video,prompt)")
    p.add_argument("--steps", type=int, default=_M.steps)
    p.add_argument("--rank", type=int, default=_M.rank)
    p.add_argument("--alpha", type=float, default=_M.alpha)
    p.add_argument("--lr", type=float, default=_M.lr)
    p.add_argument("--frames", type=int, default=_M.frames, help="frames per clip (4k+1)")
    p.add_argument("--height", type=int, default=_M.height)
    p.add_argument("--width", type=int, default=_M.width)
    p.add_argument("--fps", type=float, default=_M.fps, help="clips are resampled to this rate")
    p.add_argument("--loop", action="store_true", help="repeat clips shorter than --frames instead of stopping")
    p.add_argument("--flow-model", default=_M.flow_model,
                   help="SEA-RAFT checkpoint: hub id, folder, .safetensors or official .pth")
    p.add_argument("--flow-iters", type=int, help="SEA-RAFT refinement iterations (default: the checkpoint's)")
    p.add_argument("--mora-weight", type=float, default=_M.mora_weight, help="alpha of L_MoRA")
    p.add_argument("--window", type=int, default=_M.window, help="latent frames decoded per MoRA window")
    p.add_argument("--window-stride", type=int, default=_M.window_stride, help="latents between successive window starts")
    p.add_argument("--drop-frames", type=int, default=_M.drop_frames, help="decoded warm-up frames dropped from each window")
    p.add_argument("--no-mora", action="store_true", help="the paper's 'w/o MoRA' ablation and plain motion LoRA")
    p.add_argument("--vae-checkpointing", choices=["none", "frame", "block"], default="block",
                   help="what the MoRA decode recomputes in backward: nothing (fastest, most memory), each latent "
                        "frame, or each frame and each decoder block (least memory; default)")
    p.add_argument("--vae-store-frames", type=int, default=0,
                   help="store the decode of the last N latent frames of the MoRA window instead of recomputing "
                        "it (with --vae-checkpointing frame|block: about one frame's activations each, for speed)")
    p.add_argument("--flow-chunk", type=int, default=0,
                   help="SEA-RAFT frame pairs per checkpointed call in MoRA (default 0: all pairs at once, "
                        "stored; a small number saves memory only where SEA-RAFT, not the DiT, sets the peak)")
    add_run_args(p)
    p.set_defaults(func=run_motion)


def run_subject(args) -> int:
    import torch

    from ..models.dinov2 import load_dinov2
    from ..train.subject import SubjectTrainConfig, train_subject

    cfg = SubjectTrainConfig(
        model=args.model, data=args.data, out=args.out, name=args.name, steps=args.steps, rank=args.rank,
        alpha=args.alpha, lr=args.lr, resolution=args.resolution, encoder=args.encoder, sura_weight=args.sura_weight,
        sura_layer=args.sura_layer, projector_width=args.projector_width, use_sura=not args.no_sura,
        use_mask=not args.no_mask, seed=args.seed,
        gradient_checkpointing=not args.no_gradient_checkpointing, compile=args.compile,
        cuda_graphs=args.cuda_graphs,
        mixed_precision=args.mixed_precision, checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every, validation_prompt=args.validation_prompt, save_dtype=args.save_dtype,
        cache_dir=args.cache_dir,
    ).validate()
    check_model_args(args)
    use_hub(args, args.model, args.encoder if cfg.use_sura else None)
    pipe = load_pipeline_from_args(args)
    encoder = None
    if cfg.use_sura:
        def encoder():  # loaded only if some image's DINOv2 features are not cached yet (a first run)
            dtype = torch.bfloat16 if pipe._execution_device.type == "cuda" else torch.float32
            return load_dinov2(args.encoder, device=pipe._execution_device, dtype=dtype,
                               local_files_only=True if args.offline or os.path.isdir(args.encoder) else None)
    model_id = os.path.abspath(args.model) if os.path.isdir(args.model) else args.model
    final = train_subject(cfg, pipe, encoder, model_id=model_id, resume=args.resume, overwrite=args.overwrite,
                          progress=not args.quiet)
    print(f"wrote {final}")
    return 0


def run_motion(args) -> int:
    from ..models.searaft import load_searaft
    from ..train.motion import MotionTrainConfig, train_motion

    cfg = MotionTrainConfig(
        model=args.model, data=args.data, out=args.out, steps=args.steps, rank=args.rank, alpha=args.alpha,
        lr=args.lr, frames=args.frames, height=args.height, width=args.width, fps=args.fps, loop=args.loop,
        flow_model=args.flow_model, flow_iters=args.flow_iters, use_mora=not args.no_mora,
        mora_weight=args.mora_weight, window=args.window, window_stride=args.window_stride,
        drop_frames=args.drop_frames, seed=args.seed, gradient_checkpointing=not args.no_gradient_checkpointing,
        vae_checkpointing=args.vae_checkpointing, vae_store_frames=args.vae_store_frames,
        flow_chunk=args.flow_chunk or None, compile=args.compile,
        mixed_precision=args.mixed_precision, checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every, validation_prompt=args.validation_prompt, save_dtype=args.save_dtype,
        cache_dir=args.cache_dir,
    ).validate()
    check_model_args(args)
    use_hub(args, args.model, args.flow_model if cfg.use_mora else None)
    pipe = load_pipeline_from_args(args)
    flow_model = None
    flow_id = os.path.abspath(args.flow_model) if os.path.exists(args.flow_model) else args.flow_model
    if cfg.use_mora:
        flow_model = load_searaft(args.flow_model, device=pipe._execution_device,
                                  local_files_only=True if args.offline else None)
    model_id = os.path.abspath(args.model) if os.path.isdir(args.model) else args.model
    final = train_motion(cfg, pipe, flow_model, model_id=model_id, flow_id=flow_id, resume=args.resume,
                         overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {final}")
    return 0
