"""`smrabooth tiny-model`: save a tiny random-weight model folder of any backbone (for tests and trying things out)."""

from __future__ import annotations

# --kind -> backbone name (wan and zeroscope: the spellings before Wan2.2)
KINDS = {"wan": "wan2.1", "wan2.1": "wan2.1", "wan2.2-a14b": "wan2.2-a14b", "wan2.2-ti2v": "wan2.2-ti2v",
         "zeroscope": "zeroscope"}


def register(subparsers) -> None:
    p = subparsers.add_parser("tiny-model", help="write a tiny random-weight model folder (for tests/demos)")
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument("--kind", choices=list(KINDS), default="wan",
                   help="wan (Wan2.1), wan2.2-a14b (two experts), wan2.2-ti2v (Wan2.2 VAE), zeroscope (U-Net)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..backbones import BACKBONES
    from ..errors import SmraboothError
    from ..validation import check_number, check_output_dir

    out = check_output_dir("--out", args.out)
    check_number("--seed", args.seed, 0, 2**63 - 1, integer=True)
    if out.exists() and any(out.iterdir()):
        raise SmraboothError(f"{out} exists and is not empty: choose another --out")
    backbone = BACKBONES[KINDS[args.kind]]
    write_folder(backbone.build_tiny(seed=args.seed), out)
    print(f"wrote a tiny {backbone.title} model to {out} (use it as --model {out})")
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
