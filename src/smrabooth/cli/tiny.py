"""`smrabooth tiny-model`: save the tiny random-weight Wan pipeline to a folder (for trying things out)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("tiny-model", help="write a tiny random-weight Wan2.1 model folder (for tests/demos)")
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument("--kind", choices=["wan", "zeroscope"], default="wan",
                   help="wan: a tiny WanPipeline; zeroscope: a tiny TextToVideoSDPipeline (the U-Net variant)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import SmraboothError
    from ..models.tiny import TinyWanConfig, build_tiny_wan_pipeline
    from ..validation import check_number, check_output_dir

    out = check_output_dir("--out", args.out)
    check_number("--seed", args.seed, 0, 2**63 - 1, integer=True)
    if out.exists() and any(out.iterdir()):
        raise SmraboothError(f"{out} exists and is not empty: choose another --out")
    if args.kind == "zeroscope":
        from ..models.unet import TinyZeroScopeConfig, build_tiny_zeroscope_pipeline

        write_folder(build_tiny_zeroscope_pipeline(TinyZeroScopeConfig(seed=args.seed)), out)
        print(f"wrote a tiny ZeroScope (U-Net) model to {out} (use it as --model {out})")
        return 0
    write_folder(build_tiny_wan_pipeline(TinyWanConfig(seed=args.seed)), out)
    print(f"wrote a tiny Wan2.1 model to {out} (use it as --model {out})")
    return 0


def write_folder(pipe, out) -> None:
    """save_pretrained into a temporary sibling renamed into place: a full disk leaves no half-written model."""
    import os
    import shutil
    from pathlib import Path

    from safetensors import SafetensorError

    from ..errors import SmraboothError

    out = Path(os.path.abspath(out))
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        pipe.save_pretrained(tmp)
        if out.exists():
            out.rmdir()  # empty: checked before
        os.replace(tmp, out)
    except (OSError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SmraboothError(f"could not write the model to {out} ({' '.join(str(e).split())}); nothing was "
                             "left behind") from None
