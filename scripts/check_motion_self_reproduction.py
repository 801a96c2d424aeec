#!/usr/bin/env python
"""Can a motion LoRA draw its own training clip again? The check every SMRA-Sprites motion result rests on.

    python scripts/check_motion_self_reproduction.py --out DIR [--model BUNDLE] [--family spiral] [--clips 1]
        [--sprite-scales 1,2] [--recipes paper,official] [--kinds plain,mora] [--steps 100] [--seeds 0,1]
        [--control 8] [--set FIELD=VALUE ...] [--device cuda]

Per sprite scale, a motion folder of --clips clips of the family (scale 1: exactly the bench's clips for
that family; scale 2: the same designs and path shapes with the sprite twice as large, as the bundle's DiT
was pretrained). Per (scale, recipe, kind) a motion LoRA trained on that folder with the bench's settings
(`experiment.motion_train_config`; kind `mora` with MoRA, `plain` without). Then each clip's own caption is
generated with the LoRA on all its layers at scale 1 (a two-phase recipe also gets a row with its spatial
LoRA added, as in its temporal phase) and with no LoRA, same seeds, and the sprite found in each frame
(`analysis.track_sprite`, colour against the border) is compared with the clip's true centres:

  found     share of frames with a sprite
  err       mean distance of the generated centre from the true one, in image widths (frames with a sprite)
  traj      trajectory similarity of the displacements (analysis.trajectory_similarity; 1 = same path)
  travel    length of the generated path / length of the true one (0: the sprite stays where it is)
  size      the generated sprite's mean radius / the true one
  family    the family the generated path is classified as (how many seeds x clips got the clip's own)
  loss      the training loss, mean of the last fifth of the steps (of the temporal phase for two phases)

--set FIELD=VALUE (repeatable) changes one training setting of every LoRA (a MotionTrainConfig field, e.g.
timestep_weight=none, shift=5, layer_types=q,k,v,o,ffn.0,ffn.2, spatial_steps=0, debiased=false): one
ingredient of a recipe at a time. The LoRA folders are named after the changes.

With --control N, the same numbers for N clips like the DiT's pretraining ones (random train-split
sprites and motions at the bundle's pretraining sprite scale, seeds from 1,000,000 on: outside its pool;
only families that move the sprite's centre, since the path is what is scored),
generated without a LoRA from their full captions, which name the motion: how well the DiT itself draws a
path it was trained on, the most a motion LoRA can build on.

Writes DIR/results.json (every video's numbers), DIR/table.md and DIR/frames.png (per clip and scale: the
truth, no LoRA, then each LoRA; then for the first 4 control clips, truth and generation in turn; the first
of --seeds; frames 0, 4, 8, 12, 16 of a 17-frame bundle).
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np


def path_scores(frames: np.ndarray, truth: dict, size: int) -> dict:
    """The numbers above for one generated clip against the true positions and radii of its clip."""
    from smrabooth_sprites.analysis import classify_motion, track_sprite, trajectory_similarity
    from smrabooth_sprites.scoring import FG_THRESHOLD, fill_missing

    positions, scales, _ = track_sprite(frames, FG_THRESHOLD)
    found = np.isfinite(positions).all(1)
    filled = fill_missing(positions)
    true_p, true_r = truth["positions"].astype(np.float64), truth["scales"].astype(np.float64)
    if filled is None:
        return {"found": float(found.mean()), "err": float("nan"), "traj": 0.0, "travel": 0.0,
                "size": float("nan"), "family": "none"}

    def length(p):
        return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())

    return {"found": float(found.mean()),
            "err": float(np.linalg.norm(positions[found] - true_p[found], axis=1).mean() / size),
            "traj": float(trajectory_similarity(filled, true_p)),
            "travel": length(filled) / max(length(true_p), 1e-9),
            "size": float(np.nanmean(scales) / true_r.mean()),
            "family": classify_motion(filled)}


def _number_or_text(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None if text.lower() == "none" else text


def with_changes(cfg, changes: list[str]):
    """`cfg` (a config dataclass) with each FIELD=VALUE of `changes`, the value read as the field's type (layer
    sets as comma lists; a field that is None now: a number when it reads as one)."""
    import dataclasses

    from smrabooth.errors import SmraboothError
    from smrabooth.lora.targets import parse_layer_types

    for change in changes:
        name, sep, text = change.partition("=")
        if not sep or not hasattr(cfg, name):
            raise SmraboothError(f"--set {change!r}: give FIELD=VALUE with a field of {type(cfg).__name__}")
        old = getattr(cfg, name)
        if isinstance(old, bool):
            value = text.lower() in ("1", "true", "yes", "on")
        elif isinstance(old, tuple):
            value = parse_layer_types(text)
        else:
            value = type(old)(text) if old is not None else _number_or_text(text)
        cfg = dataclasses.replace(cfg, **{name: value})
    return cfg


def final_loss(run: Path) -> float:
    """Mean loss of the last fifth of the steps (of the last phase, when there are two)."""
    from smrabooth.train.state import read_log

    rows = [r for r in read_log(run / "log.jsonl") if "loss" in r]
    last_phase = max((r.get("phase", 0) for r in rows), default=0)
    rows = [r for r in rows if r.get("phase", 0) == last_phase]
    return float(np.mean([r["loss"] for r in rows[-max(1, len(rows) // 5):]])) if rows else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=None, help="bundle folder (default: the shipped one)")
    p.add_argument("--family", default="spiral")
    p.add_argument("--clips", type=int, default=1)
    p.add_argument("--sprite-scales", default="1,2")
    p.add_argument("--recipes", default="paper,official")
    p.add_argument("--kinds", default="plain,mora")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="see above")
    p.add_argument("--control", type=int, default=0, help="pretraining-like clips, no LoRA (see above)")
    p.add_argument("--lr", type=float, default=None, help="default: the bench's")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()

    from PIL import Image

    from smrabooth.lora.files import load_lora
    from smrabooth.sampling import GenerateConfig, generate
    from smrabooth.train.motion import FINAL_NAME, SPATIAL_NAME, train_motion
    from smrabooth.video import frame_strip
    from smrabooth_sprites.analysis import IN_PLACE_FAMILIES
    from smrabooth_sprites.bundle import load_bundle
    from smrabooth_sprites.experiment import (
        ExperimentSettings,
        motion_train_config,
        resolve_bundle,
        settings_for_bundle,
    )
    from smrabooth_sprites.folders import load_ground_truth, write_motion_folder
    from smrabooth_sprites.world import sample_clip, sample_family_clips

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings_for_bundle(ExperimentSettings(
        model=str(resolve_bundle(args.model)), out=str(out), motion_steps=args.steps, motion_clips=args.clips,
        device=args.device, progress=not args.no_progress, **({"lr": args.lr} if args.lr else {})))
    models = load_bundle(settings.model, device=args.device)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, strips, started = [], [], time.time()

    def generate_scored(prompt: str, seed: int, truth: dict, spatial=None, motion=None):
        """One video of `prompt` (each LoRA on all its layers at scale 1) and its path scores against `truth`."""
        config = GenerateConfig(prompt=prompt, frames=settings.frames, height=settings.size, width=settings.size,
                                steps=settings.gen_steps, guidance=settings.guidance, seed=seed, injection="dense",
                                fps=settings.fps)
        frames = generate(models.pipe, config, spatial, motion, progress=False).frames
        return frames, path_scores(frames, truth, settings.size)

    for scale in [float(s) for s in args.sprite_scales.split(",") if s]:  # "" with --control: the control alone
        motion_dir = out / f"clips-x{scale:g}"
        if not (motion_dir / "metadata.csv").is_file():
            clips = sample_family_clips(args.family, args.clips, seed=settings.data_seed + 101,
                                        frames=settings.frames, size=settings.size, sprite_scale=scale)
            write_motion_folder(motion_dir, clips, fps=settings.fps, frames=settings.frames, size=settings.size)
        loras = {"none": (None, None, float("nan"), 0.0)}
        for recipe in args.recipes.split(","):
            for kind in args.kinds.split(","):
                settings.recipe = recipe
                label = f"{recipe}/{kind}" + "".join(f" {c}" for c in args.set)
                run = out / "loras" / "-".join([f"x{scale:g}", recipe, kind, *args.set]).replace(",", "+")
                if not (run / FINAL_NAME).is_file():
                    cfg = with_changes(motion_train_config(settings, motion_dir, run, use_mora=kind == "mora"),
                                       args.set)
                    t0 = time.time()
                    train_motion(cfg, models.pipe, models.searaft if kind == "mora" else None,
                                 model_id=settings.model, overwrite=True, progress=settings.progress)
                    (run / "time.json").write_text(json.dumps({"seconds": time.time() - t0}))
                seconds = json.loads((run / "time.json").read_text())["seconds"]
                motion, loss = load_lora(run / FINAL_NAME), final_loss(run)
                loras[label] = (None, motion, loss, seconds)
                if (run / SPATIAL_NAME).is_file():
                    loras[f"{label} +spatial"] = (load_lora(run / SPATIAL_NAME), motion, loss, 0.0)
        for i in range(args.clips):
            item = json.loads((motion_dir / f"clip_{i:03d}.json").read_text())
            truth = load_ground_truth(motion_dir / f"clip_{i:03d}.npz")
            videos = [truth["frames"]]
            for name, (spatial, motion, loss, seconds) in loras.items():
                for seed in seeds:
                    frames, scores = generate_scored(item["text"], seed, truth, spatial, motion)
                    rows.append({"scale": scale, "clip": i, "lora": name, "seed": seed, "loss": loss,
                                 "true_family": args.family, "train_seconds": seconds, "caption": item["text"],
                                 **scores})
                    print(json.dumps(rows[-1]), flush=True)
                    if seed == seeds[0]:
                        videos.append(frames)
            strips.append(frame_strip(videos, 5))
    if args.control:
        pretrain = models.info.get("training", {}).get("dit", {}).get("settings", {})
        scale = float(pretrain.get("sprite_scale", 1.0))
        videos = []
        seed_iter = (sample_clip(s, "train", settings.frames, settings.size, sprite_scale=scale)
                     for s in itertools.count(10 ** 6))
        moving = (c for c in seed_iter if c.motion.family not in IN_PLACE_FAMILIES)
        for i, clip in zip(range(args.control), moving):
            truth = {"positions": clip.positions, "scales": clip.scales}
            for seed in seeds:
                frames, scores = generate_scored(clip.caption, seed, truth)
                rows.append({"scale": scale, "clip": i, "lora": "none, pretraining-like clip", "seed": seed,
                             "loss": float("nan"), "train_seconds": 0.0, "caption": clip.caption,
                             "true_family": clip.motion.family, **scores})
                print(json.dumps(rows[-1]), flush=True)
                if seed == seeds[0] and i < 4:
                    videos += [clip.frames, frames]
        strips.append(frame_strip(videos, 5))
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    if strips:
        Image.fromarray(np.concatenate(strips, 0)).save(out / "frames.png")
    lines = ["| sprite scale | LoRA | found | err | traj | travel | size | own family | loss |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key in dict.fromkeys((r["scale"], r["lora"]) for r in rows):
        group = [r for r in rows if (r["scale"], r["lora"]) == key]
        mean = {k: float(np.nanmean([r[k] for r in group])) for k in ("found", "err", "traj", "travel", "size")}
        own = sum(r["family"] == r["true_family"] for r in group)
        lines.append(f"| {key[0]:g} | {key[1]} | {mean['found']:.2f} | {mean['err']:.3f} | {mean['traj']:.2f} | "
                     f"{mean['travel']:.2f} | {mean['size']:.2f} | {own}/{len(group)} | {group[0]['loss']:.3f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"{time.time() - started:.0f} s; wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'frames.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
