"""`smrabooth sprites sample|subject|motion`: clips and training folders of the SMRA-Sprites world."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("sprites", help="the SMRA-Sprites world: sample clips, write subject/motion folders")
    sub = p.add_subparsers(dest="sprites_command", metavar="ACTION", required=True)

    s = sub.add_parser("sample", help="random clips as mp4 + contact sheet of first frames + captions.txt")
    s.add_argument("--out", required=True, help="folder to create")
    s.add_argument("--n", type=int, default=8, help="number of clips (seeds seed .. seed+n-1)")
    s.add_argument("--split", default="train", choices=["train", "heldout"])
    _add_clip_args(s)
    s.set_defaults(func=run_sample)

    s = sub.add_parser("subject", help="a subject folder (images/, masks/, metadata.csv) of one design")
    s.add_argument("--out", required=True, help="folder to create")
    s.add_argument("--design", default="heldout:0",
                   help="heldout:N (N-th held-out subject) or shape,color,texture[,texture_color], "
                   "e.g. star,red,striped,white")
    s.add_argument("--n", type=int, default=8, help="number of images")
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--background", default=None, help="one background colour for all images (default: random)")
    s.add_argument("--name", default=None, help="class noun after V* (default: the shape)")
    s.set_defaults(func=run_subject)

    s = sub.add_parser("motion", help="a motion folder (mp4 + ground truth + metadata.csv) of one family")
    s.add_argument("--out", required=True, help="folder to create")
    s.add_argument("--family", required=True, help="motion family, e.g. circle or figure-eight")
    s.add_argument("--n", type=int, default=4, help="number of clips (random designs and backgrounds)")
    _add_clip_args(s)
    s.set_defaults(func=run_motion)


def _add_clip_args(p) -> None:
    p.add_argument("--frames", type=int, default=17, help="frames per clip (4k+1 for Wan: 17, 49)")
    p.add_argument("--size", type=int, default=128, help="frame width and height in pixels (even)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=15)


def parse_design(text: str):
    from ..errors import SmraboothError
    from ..sprites import HELDOUT_SUBJECTS, SpriteDesign

    if text.startswith("heldout:"):
        try:
            return HELDOUT_SUBJECTS[int(text.split(":", 1)[1])]
        except (ValueError, IndexError):
            raise SmraboothError(f"--design {text}: use heldout:0 .. heldout:{len(HELDOUT_SUBJECTS) - 1}") from None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 3 and parts[2] == "solid":
        parts.append(parts[1])
    if len(parts) != 4:
        raise SmraboothError(f"--design {text}: expected shape,color,texture,texture_color (e.g. star,red,striped,"
                             f"white) or heldout:N")
    return SpriteDesign(*parts)


def run_sample(args) -> int:
    from pathlib import Path

    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from ..errors import SmraboothError
    from ..sprites import sample_clip
    from ..sprites.folders import _prepare
    from ..video import write_video

    if args.n < 1:
        raise SmraboothError(f"--n must be at least 1, got {args.n}")
    out = _prepare(Path(args.out))
    firsts, lines = [], []
    for seed in tqdm(range(args.seed, args.seed + args.n), desc="sprites", unit="clip"):
        clip = sample_clip(seed, args.split, args.frames, args.size)
        name = f"sample_{seed:04d}.mp4"
        write_video(clip.frames, out / name, fps=args.fps)
        firsts.append(clip.frames[0])
        lines.append(f"{name}\t{clip.caption}")
    cols = int(np.ceil(np.sqrt(len(firsts))))
    rows = int(np.ceil(len(firsts) / cols))
    sheet = np.full((rows * args.size, cols * args.size, 3), 255, dtype=np.uint8)
    for i, f in enumerate(firsts):
        r, c = divmod(i, cols)
        sheet[r * args.size:(r + 1) * args.size, c * args.size:(c + 1) * args.size] = f
    Image.fromarray(sheet).save(out / "contact_sheet.png")
    (out / "captions.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.n} {args.split} clips, contact_sheet.png and captions.txt to {out}")
    return 0


def run_subject(args) -> int:
    from ..sprites import write_subject_folder
    from ..sprites.folders import subject_text

    design = parse_design(args.design)
    out = write_subject_folder(args.out, design, args.n, args.seed, args.size, args.background, args.name)
    print(f"wrote {args.n} images of the {design.words()} (texture colour {design.texture_color}) to {out}, "
          f"captioned '{subject_text(design, args.name)}'")
    return 0


def run_motion(args) -> int:
    from ..sprites import sample_family_clips, write_motion_folder

    clips = sample_family_clips(args.family, args.n, args.seed, args.frames, args.size)
    out = write_motion_folder(args.out, clips, fps=args.fps)
    print(f"wrote {args.n} {args.family} clips ({args.frames} frames, {args.size}px) to {out}")
    return 0
