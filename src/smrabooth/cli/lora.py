"""`smrabooth lora info|convert`: inspect LoRA files and move them between tools' key formats."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("lora", help="inspect and convert LoRA files")
    sub = p.add_subparsers(dest="lora_command", metavar="ACTION", required=True)

    info = sub.add_parser("info", help="print rank, alpha, layer types and layer count of a LoRA")
    info.add_argument("file")
    info.set_defaults(func=run_info)

    conv = sub.add_parser("convert", help="convert between diffusers, ComfyUI and DiffSynth keys",
                          description="Convert a Wan LoRA between the key formats of diffusers, ComfyUI and "
                          "DiffSynth-Studio (docs/lora-files.md). A Wan2.2 A14B LoRA is one file per expert in "
                          "every tool; which expert is recorded in the file's metadata, read from another tool's "
                          "file name (..._high_noise, ..._low) or given with --expert.")
    conv.add_argument("input")
    conv.add_argument("output")
    conv.add_argument("--to", required=True, choices=["diffusers", "comfyui", "diffsynth"])
    conv.add_argument("--expert", choices=["high", "low"],
                      help="Wan2.2 A14B: the expert the LoRA belongs to (default: the one the input records or "
                      "names; stock diffusers loads a low-noise file with load_into_transformer_2=True)")
    conv.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    conv.set_defaults(func=run_convert)


def run_info(args) -> int:
    from ..backbones import backbone_for_lora_file
    from ..validation import check_readable

    check_readable("FILE", args.file, "file")
    print(backbone_for_lora_file(args.file).describe_lora(args.file))
    return 0


def run_convert(args) -> int:
    from ..lora.files import load_lora, save_lora
    from ..validation import check_output_file, check_readable

    check_readable("INPUT", args.input, "file")
    output = check_output_file("OUTPUT", args.output, suffixes=(".safetensors",), overwrite=args.overwrite,
                               inputs={"INPUT": args.input})
    output.parent.mkdir(parents=True, exist_ok=True)
    weights = load_lora(args.input, "INPUT")
    weights.info.pop("source_format", None)
    if args.expert:
        weights.info["expert"] = args.expert
    save_lora(args.output, weights, fmt=args.to)
    expert = f", {weights.info['expert']}-noise expert" if weights.info.get("expert") else ""
    print(f"wrote {args.output} ({args.to} keys, rank {weights.rank}, alpha {weights.alpha:g}, "
          f"{len(weights.modules)} layers{expert})")
    return 0
