"""Flags shared by the subcommands that load a Wan model."""

from __future__ import annotations


def add_model_args(parser) -> None:
    parser.add_argument("--model", required=True,
                        help="diffusers-format Wan2.1 T2V model: hub id (Wan-AI/Wan2.1-T2V-1.3B-Diffusers) "
                        "or local folder")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                        help="transformer and text-encoder dtype (auto: bf16 on a GPU, fp32 on the CPU)")
    parser.add_argument("--vae-dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="VAE dtype")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--offline", action="store_true",
                        help="never contact the hub (also: HF_HUB_OFFLINE=1); local folders are always offline")


def load_pipeline_from_args(args, text_encoder_device: str | None = None):
    """The Wan pipeline of --model/--dtype/--device; `text_encoder_device` 'cpu' keeps the text encoder
    there (--offload: it visits the GPU only to encode)."""
    from ..models.wan import load_wan_pipeline

    return load_wan_pipeline(args.model, dtype=args.dtype, vae_dtype=args.vae_dtype, device=args.device,
                             local_files_only=True if args.offline else None, text_encoder_device=text_encoder_device)


def check_model_args(args) -> None:
    """The model flags, checked before anything loads: --model a Wan folder or a hub id, --device present."""
    from ..models.wan import check_model_source
    from ..validation import check_device

    check_model_source(args.model, "--model")
    check_device("--device", args.device)


def use_hub(args, *names) -> None:
    """Before loading models named by hub ids: offline with --offline, else probe the hub once (hub.py)."""
    from ..hub import check_hub_reachable, go_offline

    if getattr(args, "offline", False):
        go_offline()
    else:
        check_hub_reachable(names)
