#!/usr/bin/env python
"""Does the subject LoRA carry the subject into a video under sparse injection? (docs/bench-sprites.md, "Diagnosis")

    python scripts/diagnose_subject.py --out DIR [--model BUNDLE] [--subjects 0,1,2,3] [--seeds 0,1]
        [--recipe paper] [--steps 150] [--lr 5e-4] [--rank 16] [--no-sura]
        [--set FIELD=VALUE ...] [--gen-set FIELD=VALUE ...] [--label NAME]

Per held-out subject (the bench's subject folder: 4 stills with exact masks, "a picture of V* heart"), a
subject LoRA is trained with the bench's settings (`experiment.subject_train_config`) plus every --set (a
SubjectTrainConfig field, e.g. layer_types=q,k,ffn.0 or timestep_weight=bell), and then, per seed:

  still    the LoRA's own caption as a one-frame image, the LoRA on all its layers at scale 1
  video    the bench's combined prompt ("a V* heart doing S* on a blue background") with the subject LoRA
           ALONE (no motion LoRA) under the method's sparse injection (q, k, ffn.0; 0.5 before T_point), plus
           every --gen-set (a GenerateConfig field, e.g. subject_scale_early=1, injection=dense)

both scored for appearance against the subject stills (dino_i, fg_color; fg_first / fg_last: fg_color of
frames 0-3 and of the last 4 frames, to see a subject that fades), and the same without a LoRA (rows "none",
computed once per folder). Every run appends to DIR/results.json; the printed table (mean ± 95% interval
over subjects x seeds) covers every label in it, so one folder collects a whole sweep.

--as-clips trains the LoRA another way, as a probe of why the subject is lost over a video's frames
(benchmarks/history/sprites-diagnosis.md, section 7): the 4 stills each become a still clip of the bundle's length,
captioned as the stills are, and the motion trainer trains a plain LoRA on them (the flow-matching loss on the
whole clip; no mask, no SuRA, no MoRA, no debiased loss: a still clip has no motion to debias), on q, k, ffn.0.
The subject trainer's own way to do this is --set still_frames=17 (mask and SuRA kept).

--vae-ceiling only scores each subject's stills after a round trip through the bundle's VAE: the best any
LoRA can show through it (DIR/vae_stills.png: the stills above their round trips); and the perfect video (the
subject itself doing the case's motion, and held still) as rendered and after a round trip, scored as the bench
scores a video (DIR/vae_video_*.png: every fourth frame above its round trip).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--subjects", default="0,1,2,3")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--recipe", default="paper")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--no-sura", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--gen-set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--label", default=None, help="row name (default: from the settings)")
    p.add_argument("--motion", default="spiral", help="the case's motion (only its prompt's background matters)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--as-clips", action="store_true", help="train the LoRA on the stills as still clips with the "
                   "motion trainer (see above)")
    p.add_argument("--vae-ceiling", action="store_true",
                   help="only score each subject's stills after a VAE round trip (the best any LoRA can show "
                        "through the bundle's VAE) and the stills themselves; DIR/vae_stills.png")
    args = p.parse_args()

    from check_motion_self_reproduction import with_changes
    from PIL import Image

    from smrabooth.lora.files import load_lora
    from smrabooth.metrics.report import mean_ci
    from smrabooth.sampling import GenerateConfig, generate
    from smrabooth.train.motion import FINAL_NAME as MOTION_FINAL
    from smrabooth.train.subject import FINAL_NAME, train_subject
    from smrabooth_sprites.bundle import load_bundle
    from smrabooth_sprites.experiment import (
        VARIANTS,
        ExperimentSettings,
        generation_config,
        make_cases,
        prepare_case_data,
        resolve_bundle,
        settings_for_bundle,
        subject_train_config,
    )
    from smrabooth_sprites.scoring import SpriteScorer, foreground_colour_similarity, load_reference

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings_for_bundle(ExperimentSettings(
        model=str(resolve_bundle(args.model)), out=str(out), subject_steps=args.steps, lr=args.lr,
        subject_rank=args.rank, recipe=args.recipe, device=args.device, progress=False, motion_fidelity=False))
    models = load_bundle(settings.model, device=args.device)
    scorer = SpriteScorer(models.dinov2, models.searaft, device=args.device, with_motion_fidelity=False)
    seeds = [int(s) for s in args.seeds.split(",")]
    cases = make_cases([int(s) for s in args.subjects.split(",")], [args.motion])
    if args.vae_ceiling:
        return vae_ceiling(settings, models, scorer, cases, out)
    train_label = "-".join([args.recipe, f"{args.steps}st", f"lr{args.lr:g}", f"r{args.rank}",
                            "clips" if args.as_clips else "plain" if args.no_sura else "sura",
                            *args.set]).replace(",", "+")
    label = args.label or " ".join([train_label, *args.gen_set])
    results_file = out / "results.json"
    rows = json.loads(results_file.read_text()) if results_file.is_file() else []
    have = {(r["label"], r["case"], r["seed"], r["kind"]) for r in rows}
    started = time.time()

    def appearance(frames, ref) -> dict:
        if len(frames) < 2:  # --gen-set frames=1: the video's prompt as one frame, scored as a still
            s = scorer.score_still(frames[0], ref)
            return {"dino_i": s["dino_i"], "fg_color": s["fg_color"], "fg_first": s["fg_color"],
                    "fg_last": s["fg_color"]}
        s = scorer.score(frames, ref)
        return {"dino_i": s["dino_i"], "fg_color": s["fg_color"],
                "fg_first": foreground_colour_similarity(frames[:4], ref.images, ref.masks),
                "fg_last": foreground_colour_similarity(frames[-4:], ref.images, ref.masks)}

    for case in cases:
        subject_dir, motion_dir = prepare_case_data(settings, case)
        ref = load_reference(subject_dir, motion_dir, case.background)
        run = out / "loras" / case.design.shape / train_label
        final = run / (MOTION_FINAL if args.as_clips else FINAL_NAME)
        if not final.is_file():
            t0 = time.time()
            if args.as_clips:
                train_as_clips(settings, models, subject_dir, out / "clips" / case.design.shape, run, args)
            else:
                cfg = with_changes(subject_train_config(settings, subject_dir, run, use_sura=not args.no_sura),
                                   args.set)
                train_subject(cfg, models.pipe, None if args.no_sura else models.dinov2, model_id=settings.model,
                              overwrite=True, progress=False)
            (run / "time.json").write_text(json.dumps({"seconds": time.time() - t0}))
        lora = load_lora(final)
        for name, weights in (("none", None), (label, lora)):
            for seed in seeds:
                if (name, case.name, seed, "video") in have:
                    continue
                still_cfg = GenerateConfig(prompt=case.still_prompt, frames=1, height=settings.size,
                                           width=settings.size, steps=settings.gen_steps, guidance=settings.guidance,
                                           seed=seed, injection="dense", fps=settings.fps)
                image = generate(models.pipe, still_cfg, weights, None, progress=False).frames[0]
                Image.fromarray(image).save(run / f"still_{'none' if weights is None else 'lora'}_s{seed}.png")
                rows.append({"label": name, "case": case.name, "seed": seed, "kind": "still",
                             **scorer.score_still(image, ref)})
                video_cfg = with_changes(generation_config(settings, case, VARIANTS["full"], seed),
                                         args.gen_set if weights is not None else [])
                frames = generate(models.pipe, video_cfg, weights, None, progress=False).frames
                np.save(run / f"video_{'none' if weights is None else 'lora'}_s{seed}.npy", frames)
                rows.append({"label": name, "case": case.name, "seed": seed, "kind": "video",
                             **appearance(frames, ref)})
                have.add((name, case.name, seed, "video"))
                print(json.dumps(rows[-2]), json.dumps(rows[-1]), flush=True)
        results_file.write_text(json.dumps(rows, indent=1))

    cols = ["dino_i", "fg_color", "fg_first", "fg_last"]
    lines = [("| LoRA (subject only) | n | still dino_i | still fg_color | video dino_i | video fg_color | "
              "video fg frames 0-3 | video fg last 4 |"), "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["label"] for r in rows):
        still = [r for r in rows if r["label"] == name and r["kind"] == "still"]
        video = [r for r in rows if r["label"] == name and r["kind"] == "video"]

        def fmt(group, col):
            m = mean_ci([r[col] for r in group])
            return f"{m['mean']:.3f} ± {m['half_width']:.3f}"

        lines.append(f"| {name} | {len(video)} | {fmt(still, 'dino_i')} | {fmt(still, 'fg_color')} | "
                     + " | ".join(fmt(video, c) for c in cols) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"{time.time() - started:.0f} s")
    return 0


def still_clip_folder(subject_dir: Path, out: Path, frames: int, fps: float) -> Path:
    """A motion-format folder (mp4 + metadata.csv) with each still of `subject_dir` as a still clip."""
    from PIL import Image

    from smrabooth.data.folders import read_subject_folder
    from smrabooth.video import write_video

    out.mkdir(parents=True, exist_ok=True)
    rows = ["file_name,text"]
    for i, item in enumerate(read_subject_folder(subject_dir)):
        image = np.asarray(Image.open(item.image_path).convert("RGB"))
        write_video(np.repeat(image[None], frames, axis=0), out / f"{i:02d}.mp4", fps=fps)
        rows.append(f'{i:02d}.mp4,"{item.text}"')
    (out / "metadata.csv").write_text("\n".join(rows) + "\n")
    return out


def train_as_clips(settings, models, subject_dir: Path, clips: Path, run: Path, args) -> None:
    """--as-clips: a plain LoRA on the stills as still clips, trained by the motion trainer."""
    from smrabooth.train.motion import MotionTrainConfig, train_motion

    data = still_clip_folder(subject_dir, clips, settings.frames, settings.fps)
    cfg = MotionTrainConfig.from_recipe(
        args.recipe, data=str(data), out=str(run), model=str(Path(settings.model).resolve()), steps=args.steps,
        rank=args.rank, alpha=float(args.rank), lr=args.lr, frames=settings.frames, height=settings.size,
        width=settings.size, fps=settings.fps, use_mora=False, debiased=False, layer_types=("q", "k", "ffn.0"),
        spatial_steps=0, seed=0, checkpoint_every=10**7, gradient_checkpointing=False, save_dtype="fp32").validate()
    train_motion(cfg, models.pipe, None, model_id=settings.model, overwrite=True, progress=False)


def vae_ceiling(settings, models, scorer, cases, out: Path) -> int:
    """The best any LoRA can show through the bundle's VAE, as stills and as videos.

    Stills: dino_i and fg_color of each subject's stills as they are and after encoding and decoding (as stills).
    Videos: the answer a perfect generation would give, the subject itself doing the case's motion (its first
    reference clip's path) on the prompt's background, scored as the bench scores a video, as rendered and after
    a round trip through the VAE as one clip; the same with the subject held still at its first position, to tell
    the VAE's temporal compression of a moving textured sprite from its spatial limit; each at the reference
    clips' sprite size and at twice it (the size the bundle's DiT was pretrained on)."""
    import dataclasses

    import torch
    from PIL import Image

    from smrabooth.data.motion import encode_video_latent
    from smrabooth.models.vae_decode import decode_latents_differentiable, to_unit_frames
    from smrabooth_sprites.experiment import prepare_case_data
    from smrabooth_sprites.scoring import foreground_colour_similarity, load_reference
    from smrabooth_sprites.world import render_clip, sample_family_clips

    def round_trip(frames: np.ndarray) -> np.ndarray:  # uint8 (F, H, W, 3) -> the same through the VAE
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            z = encode_video_latent(models.pipe.vae, x)
            y = to_unit_frames(decode_latents_differentiable(models.pipe.vae, z[None], checkpoint=False))[0]
        return (y.permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)

    def video_scores(frames, ref) -> str:
        s = scorer.score(frames, ref)
        first = foreground_colour_similarity(frames[:4], ref.images, ref.masks)
        last = foreground_colour_similarity(frames[-4:], ref.images, ref.masks)
        return (f"{s['dino_i']:.3f} / {s['fg_color']:.3f} ({first:.2f} -> {last:.2f}) / {s['traj']:.3f} / "
                f"{s['family_detected']}")

    lines = ["| subject | round trip dino_i / fg_color | the stills themselves |", "|---|---|---|"]
    videos = ["| subject | video | as rendered | VAE round trip |", "|---|---|---|---|"]
    strips = []
    for case in cases:
        subject_dir, motion_dir = prepare_case_data(settings, case)
        ref = load_reference(subject_dir, motion_dir, case.background)
        trips = [round_trip(image[None])[0] for image in ref.images]
        got = [scorer.score_still(t, ref) for t in trips]
        own = [scorer.score_still(im, ref) for im in ref.images]

        def mean(rows, k):
            return float(np.mean([r[k] for r in rows]))

        lines.append(f"| {case.design.shape} | {mean(got, 'dino_i'):.3f} / {mean(got, 'fg_color'):.3f} | "
                     f"{mean(own, 'dino_i'):.3f} / {mean(own, 'fg_color'):.3f} |")
        strips.append(np.concatenate([np.concatenate(list(ref.images), 1), np.concatenate(trips, 1)], 0))

        for scale in (1, 2):  # the reference clips' sprite size, and the pretraining clips' (--sprite-scale 2)
            motion = sample_family_clips(case.family, 1, seed=settings.data_seed + 101, frames=settings.frames,
                                         size=settings.size, sprite_scale=scale)[0].motion
            still = dataclasses.replace(motion, family="left", speed=0.0)  # a line family at speed 0: no motion
            for name, m in ((f"moving, sprite x{scale}", motion), (f"held still, sprite x{scale}", still)):
                clip = render_clip(case.design, m, case.background, settings.frames, settings.size).frames
                trip = round_trip(clip)
                videos.append(f"| {case.design.shape} | {name} | {video_scores(clip, ref)} | "
                              f"{video_scores(trip, ref)} |")
                file = f"vae_video_{case.design.shape}_{name.split(',')[0].replace(' ', '-')}_x{scale}.png"
                Image.fromarray(np.concatenate([np.concatenate(list(clip[::4]), 1),
                                                np.concatenate(list(trip[::4]), 1)], 0)).save(out / file)
    Image.fromarray(np.concatenate(strips, 0)).save(out / "vae_stills.png")
    print("\n".join(lines))
    print("\nVideos: dino_i / fg_color (frames 0-3 -> last 4) / traj / family detected")
    print("\n".join(videos))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
