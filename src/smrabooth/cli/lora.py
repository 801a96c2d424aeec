"""`smrabooth lora info|convert`: inspect LoRA files and move them between tools' key formats."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("lora", help="inspect and convert LoRA files")
    sub = p.add_subparsers(dest="lora_command", metavar="ACTION", required=True)

    info = sub.add_parser("info", help="print rank, alpha, layer types and layer count of a LoRA")
    info.add_argument("file")
    info.set_defaults(func=run_info)

    conv = sub.add_parser("convert", help="convert between diffusers, ComfyUI and DiffSynth keys")
    conv.add_argument("input")
    conv.add_argument("output")
    conv.add_argument("--to", required=True, choices=["diffusers", "comfyui", "diffsynth"])
    conv.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    conv.set_defaults(func=run_convert)


def run_info(args) -> int:
    from ..lora.files import describe_lora, load_lora

    print(describe_lora(load_lora(args.file)))
    return 0


def run_convert(args) -> int:
    from pathlib import Path

    from ..errors import SmraboothError
    from ..lora.files import load_lora, save_lora

    if Path(args.output).exists() and not args.overwrite:
        raise SmraboothError(f"{args.output} exists: pass --overwrite to replace it")
    weights = load_lora(args.input)
    weights.info.pop("source_format", None)
    save_lora(args.output, weights, fmt=args.to)
    print(f"wrote {args.output} ({args.to} keys, rank {weights.rank}, alpha {weights.alpha:g}, "
          f"{len(weights.modules)} layers)")
    return 0
