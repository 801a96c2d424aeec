#!/usr/bin/env python
"""Does every folder of the authors' released dataset load with a recipe's defaults (`official` unless told)?

    python scripts/check_authors_dataset.py ROOT [--recipe official] [--skip-absent] [--json result.json]

ROOT holds their `subject_customized/` and `motion_customized/video/` (the `datasets/` folder of their
repository, exported outside this project). No model is loaded. Each subject folder goes through the trainer's
reader (`read_subject_folder`, which checks every image and mask) and loader (`load_image_and_mask` at the
recipe's resolution, mask rule and resize filter, then `mask_to_latent_grid`); each motion folder through
`read_motion_folder` and the clip loader (`load_motion_frames` at the recipe's frames, size, clip timing and
filter). The settings are the trainers' own defaults for the recipe (`SubjectTrainConfig.from_recipe`,
`MotionTrainConfig.from_recipe`). One line per folder; exit status 1 if any folder does not load.

--skip-absent: rows whose files are missing from ROOT (a partial copy, e.g. one without its large files) are
reported and left out; the rest of the folder is read through a temporary copy of its metadata.csv beside
links to its files. Without it, a missing file is a failure, as it is for the trainers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if SRC.is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def present_copy(folder: Path, kind: str, scratch: Path) -> tuple[Path | None, list[str]]:
    """`folder` itself if every file its metadata.csv names exists, else a copy under `scratch` whose metadata.csv
    lists only the rows whose files exist (links to everything else), or None if no row's files do; returns it
    and the absent files."""
    import csv

    from smrabooth.data.folders import METADATA, read_metadata

    table = read_metadata(folder / METADATA, kind)
    bases = (folder, folder.parent)

    def exists(name: str | None) -> bool:
        return name is None or any((base / name).is_file() for base in bases)

    absent = [n for row in table.rows for n in (row.file, row.mask) if n is not None and not exists(n)]
    if not absent:
        return folder, []
    if not any(exists(row.file) and exists(row.mask) for row in table.rows):
        return None, absent
    copy = scratch / folder.name
    copy.mkdir(parents=True)
    for entry in folder.iterdir():
        if entry.name != METADATA:
            (copy / entry.name).symlink_to(entry.resolve())
    with open(copy / METADATA, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(table.columns)
        for row in table.rows:
            if exists(row.file) and exists(row.mask):
                writer.writerow([row.file, row.mask or "", row.text] if len(table.columns) == 3
                                else [row.file, row.text])
    return copy, absent


def check_subject(folder: Path, cfg, skip_absent: bool, scratch: Path) -> dict:
    from smrabooth.data.folders import METADATA, load_image, load_mask, read_metadata, read_subject_folder
    from smrabooth.data.subject import load_image_and_mask, mask_to_latent_grid

    copy, absent = present_copy(folder, "subject", scratch) if skip_absent else (folder, [])
    if copy is None:  # no listed image is in this copy: its metadata and its masks are all that can be read
        masks = [m for m in (folder / "masks").iterdir() if m.is_file()] if (folder / "masks").is_dir() else []
        for mask in masks:
            load_mask(mask)
        return {"images": 0, "absent": absent, "sizes": [], "mask_cells": [], "masks_read": len(masks),
                "captions": sorted({r.text for r in read_metadata(folder / METADATA, "subject").rows})}
    folder = copy
    items = read_subject_folder(folder, require_masks=cfg.use_mask)
    grid = (cfg.resolution // 8, cfg.resolution // 8)
    sizes, covered = [], []
    for item in items:
        sizes.append(load_image(item.image_path).size)
        _, mask = load_image_and_mask(item.image_path, item.mask_path, cfg.resolution, cfg.mask_rule,
                                      cfg.resize_filter)
        if mask is not None:
            covered.append(float(mask_to_latent_grid(mask, grid, cfg.mask_rule).mean()))
    return {"images": len(items), "absent": absent, "sizes": sorted(set(sizes)),
            "captions": sorted({it.text for it in items}), "mask_cells": covered}


def check_motion(folder: Path, cfg, skip_absent: bool, scratch: Path, compare=None) -> dict:
    from smrabooth.data.folders import read_motion_folder
    from smrabooth.data.motion import load_motion_frames
    from smrabooth.errors import SmraboothError
    from smrabooth.video import read_video

    copy, absent = present_copy(folder, "motion", scratch) if skip_absent else (folder, [])
    folder = copy or folder  # no clip in this copy: the reader names the first missing one
    clips = []
    for item in read_motion_folder(folder, check_files=True):
        clip = read_video(item.video_path)
        frames = load_motion_frames(item.video_path, cfg.frames, cfg.fps, cfg.height, cfg.width, cfg.loop,
                                    timing=cfg.clip_timing, resize_filter=cfg.resize_filter)
        record = {"file": item.video_path.name, "text": item.text, "source_frames": len(clip.frames),
                  "source_fps": round(clip.fps, 3), "source_size": list(clip.frames.shape[2:0:-1]),
                  "loaded": list(frames.shape)}
        if compare is not None:  # another recipe's clip loader, for the record
            try:
                load_motion_frames(item.video_path, compare.frames, compare.fps, compare.height, compare.width,
                                   compare.loop, timing=compare.clip_timing, resize_filter=compare.resize_filter)
                record["compare"] = "loads"
            except SmraboothError as e:
                record["compare"] = str(e).split(". ")[0].replace(f"{item.video_path} is ", "")
        clips.append(record)
    return {"clips": clips, "absent": absent}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="the folder holding subject_customized/ and motion_customized/")
    p.add_argument("--recipe", default=None, help="the recipe whose defaults are checked (default: the trainers')")
    p.add_argument("--compare", default="paper", help="also try each clip with this recipe's clip loader ('' off)")
    p.add_argument("--skip-absent", action="store_true", help="leave out rows whose files are missing (a partial copy)")
    p.add_argument("--json", help="write the per-folder results here")
    args = p.parse_args(argv)

    from smrabooth.data.folders import find_motion_folders, find_subject_folders
    from smrabooth.errors import SmraboothError
    from smrabooth.recipes import DEFAULT_RECIPE, get_recipe
    from smrabooth.train.motion import MotionTrainConfig
    from smrabooth.train.subject import SubjectTrainConfig

    try:
        recipe = get_recipe(args.recipe or DEFAULT_RECIPE).name
        compare = MotionTrainConfig.from_recipe(get_recipe(args.compare).name) if args.compare else None
        subject_cfg, motion_cfg = SubjectTrainConfig.from_recipe(recipe), MotionTrainConfig.from_recipe(recipe)
        root = Path(args.root)
        subjects, motions = find_subject_folders(root), find_motion_folders(root)
    except SmraboothError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"recipe {recipe}: subject {subject_cfg.resolution}x{subject_cfg.resolution}, mask rule "
          f"{subject_cfg.mask_rule}, filter {subject_cfg.resize_filter}; motion {motion_cfg.frames} frames "
          f"{motion_cfg.width}x{motion_cfg.height}, clip timing {motion_cfg.clip_timing}"
          + (f" ({motion_cfg.fps:g} fps)" if motion_cfg.clip_timing == "resample" else "") + "")
    results, failed = {"recipe": recipe, "subjects": {}, "motions": {}}, []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, folders in (("subject", subjects), ("motion", motions)):
            for name, folder in folders.items():
                scratch = Path(tmp) / kind / name
                try:
                    if kind == "subject":
                        r = check_subject(folder, subject_cfg, args.skip_absent, scratch)
                        cells = r["mask_cells"]
                        line = (f"{r['images']} images ({', '.join(f'{w}x{h}' for w, h in r['sizes'])}), masks ok"
                                + (f", subject on {100 * min(cells):.0f}-{100 * max(cells):.0f}% of the latent grid"
                                   if cells else "") + f", caption {r['captions'][0]!r}")
                        if not r["images"]:
                            line = (f"no listed image is in this copy; metadata.csv and {r['masks_read']} masks read, "
                                    f"caption {r['captions'][0]!r}")
                    else:
                        r = check_motion(folder, motion_cfg, args.skip_absent, scratch, compare)
                        line = "; ".join(
                            f"{c['file']}: {c['source_frames']} frames at {c['source_fps']:g} fps "
                            f"{c['source_size'][0]}x{c['source_size'][1]} -> {c['loaded'][0]} frames "
                            f"{c['loaded'][3]}x{c['loaded'][2]}"
                            + (f" ({args.compare}: {c['compare']})" if "compare" in c else "") for c in r["clips"])
                    if r["absent"]:
                        line += f"; {len(r['absent'])} listed files absent from this copy, skipped"
                    results[f"{kind}s"][name] = r
                    print(f"ok    {kind} {name}: {line}")
                except SmraboothError as e:
                    failed.append(f"{kind} {name}")
                    results[f"{kind}s"][name] = {"error": str(e)}
                    print(f"FAIL  {kind} {name}: {e}")
    n_absent = sum(len(r.get("absent", [])) for group in ("subjects", "motions") for r in results[group].values())
    print(f"{len(subjects)} subject folders, {len(motions)} motion folders: {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else "") + (f"; {n_absent} absent files skipped" if n_absent else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=list) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
