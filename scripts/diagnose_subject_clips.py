#!/usr/bin/env python
"""Does a subject LoRA trained on its stills as still VIDEOS carry the subject into a video? (a follow-up of
scripts/diagnose_subject.py; benchmarks/history/sprites-diagnosis.md, section 7)

    python scripts/diagnose_subject_clips.py --out DIR [--subjects 0,1,2,3] [--seeds 0,1] [--steps 200]

The method trains the subject LoRA on one-frame latents of the photos; in this world it then draws its subject
as one frame and loses it over a video's frames (section 6). Here, per held-out subject, the bench's 4 stills
each become a still clip of the bundle's length (the still repeated), captioned as the subject LoRA's stills
are ("a picture of V* heart"), and one LoRA is trained on them with the motion trainer as a plain LoRA: the
flow-matching loss on the whole clip, no MoRA, no debiased loss (a still clip has no motion to debias), on
q, k, ffn.0 (where sparse injection applies it), rank 16, lr 5e-4, `paper`'s timesteps. The bench's combined
prompt is then generated with that LoRA alone under sparse injection, and without a LoRA, and scored for
appearance as diagnose_subject.py scores it (DINO-I, foreground colour, of the first 4 and last 4 frames).
A deviation from the paper, measured here as a diagnosis only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--subjects", default="0,1,2,3")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    from smrabooth.lora.files import load_lora
    from smrabooth.metrics.report import mean_ci
    from smrabooth.sampling import generate
    from smrabooth.train.motion import FINAL_NAME, MotionTrainConfig, train_motion
    from smrabooth_sprites.bundle import load_bundle
    from smrabooth_sprites.experiment import (
        VARIANTS,
        ExperimentSettings,
        generation_config,
        make_cases,
        prepare_case_data,
        resolve_bundle,
        settings_for_bundle,
    )
    from smrabooth_sprites.scoring import SpriteScorer, foreground_colour_similarity, load_reference

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings_for_bundle(ExperimentSettings(model=str(resolve_bundle(args.model)), out=str(out),
                                                      device=args.device, progress=False, motion_fidelity=False))
    models = load_bundle(settings.model, device=args.device)
    scorer = SpriteScorer(models.dinov2, models.searaft, device=args.device, with_motion_fidelity=False)
    rows, started = [], time.time()
    for case in make_cases([int(s) for s in args.subjects.split(",")], ["spiral"]):
        subject_dir, motion_dir = prepare_case_data(settings, case)
        ref = load_reference(subject_dir, motion_dir, case.background)
        data = still_clip_folder(subject_dir, out / "clips" / case.design.shape, settings.frames, settings.fps)
        run = out / "loras" / case.design.shape
        if not (run / FINAL_NAME).is_file():
            cfg = MotionTrainConfig.from_recipe(
                "paper", data=str(data), out=str(run), model=str(Path(settings.model).resolve()), steps=args.steps,
                rank=16, alpha=16.0, lr=5e-4, frames=settings.frames, height=settings.size, width=settings.size,
                fps=settings.fps, use_mora=False, debiased=False, layer_types=("q", "k", "ffn.0"), spatial_steps=0,
                seed=0, checkpoint_every=10**7, gradient_checkpointing=False, save_dtype="fp32").validate()
            train_motion(cfg, models.pipe, None, model_id=settings.model, overwrite=True, progress=False)
        lora = load_lora(run / FINAL_NAME)
        for name, subject in (("none", None), ("still clips", lora)):
            for seed in [int(s) for s in args.seeds.split(",")]:
                video = generate(models.pipe, generation_config(settings, case, VARIANTS["full"], seed), subject, None,
                                 progress=False).frames
                s = scorer.score(video, ref)
                rows.append({"label": name, "case": case.name, "seed": seed, "dino_i": s["dino_i"],
                             "fg_color": s["fg_color"],
                             "fg_first": foreground_colour_similarity(video[:4], ref.images, ref.masks),
                             "fg_last": foreground_colour_similarity(video[-4:], ref.images, ref.masks)})
                print(json.dumps(rows[-1]), flush=True)
        (out / "results.json").write_text(json.dumps(rows, indent=1))
    lines = ["| subject LoRA alone, combined prompt, 17 frames | n | DINO-I | fg_color | fg frames 0-3 | fg last 4 |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in ("none", "still clips"):
        group = [r for r in rows if r["label"] == name]
        cells = [f"{mean_ci([r[c] for r in group])['mean']:.3f} ± {mean_ci([r[c] for r in group])['half_width']:.3f}"
                 for c in ("dino_i", "fg_color", "fg_first", "fg_last")]
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
