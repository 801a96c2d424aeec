#!/usr/bin/env python
"""What an SMRA-Sprites bundle can draw: VAE reconstruction error per frame and a sample grid.

    python scripts/check_sprites_bundle.py [BUNDLE] [--clips 16] [--samples grid.png] [--device cpu]

Prints the L1 (pixels in [-1, 1]) of encode -> decode per frame on sprite and on background pixels of
clips the pretraining never sees (`sprites.pretrain.vae.reconstruction_errors`): the DiT can draw no
better than this. With --samples, writes a grid through WanPipeline: one row per prompt below, frames
0, 4, 8, 12, 16 (30 UniPC steps, CFG 5, seed = row index), then a row of one-frame videos of the STILLS
prompts (seed 0): what a subject LoRA, trained on images as one-frame videos, starts from.

With --lora FILE --lora-samples PNG, whether a LoRA carries over from images to videos: two rows, with
and without the LoRA (same seeds): one frame of --lora-still, then frames 0, 4, 8, 12, 16 of
--lora-video. E.g. the subject LoRA of a demo run:

    python scripts/check_sprites_bundle.py --clips 0 --lora demo/subject_lora.safetensors \
        --lora-still "a picture of V* heart" --lora-video "a V* heart moving left on a blue background" \
        --lora-samples subject-lora.png

With --prompt-rows PNG, one row per --prompt (repeatable; default PROMPT_ROWS below), frames 0, 4, 8, 12,
16, seed 0: how the model answers the method's prompts, which name a subject only by V* and a class noun
and the motion only by S* (benchmarks/sprites/prompts-v5.png).
"""

import argparse
import json

import numpy as np
import torch

PROMPTS = (
    "a red circle moving left on a blue background",
    "a yellow striped square moving up on a black background",
    "a green triangle moving right on a white background",
)
STILLS = (
    "a picture of a red circle on a blue background",
    "a picture of a yellow striped square",
    "a picture of a green triangle on a white background",
    "a picture of a blue checked heart",
    "a picture of an orange dotted star on a black background",
)
PROMPT_ROWS = (
    "a red checked heart moving in a spiral on a blue background",
    "a red checked heart doing S* on a blue background",
    "a V* heart moving in a spiral on a blue background",
    "a V* heart doing S* on a blue background",
    "a heart moving in a circle on a blue background",
    "a red checked heart moving S* on a blue background",
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", nargs="?", default=None, help="bundle folder (default: the shipped one)")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--samples", default=None, help="write a sample grid (PNG) here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--lora", default=None, help="a LoRA file (ours, ComfyUI or DiffSynth keys)")
    p.add_argument("--lora-still", default="a picture of V* heart")
    p.add_argument("--lora-video", default="a V* heart moving left on a blue background")
    p.add_argument("--lora-samples", default=None, help="write the with/without-LoRA rows (PNG) here")
    p.add_argument("--prompt-rows", default=None, help="write one row per --prompt (PNG) here")
    p.add_argument("--prompt", action="append", default=None, help="a prompt for --prompt-rows (repeatable)")
    args = p.parse_args()
    if bool(args.lora) != bool(args.lora_samples):
        p.error("--lora and --lora-samples go together")

    from smrabooth.video import frame_strip
    from smrabooth_sprites.bundle import load_bundle
    from smrabooth_sprites.pretrain.vae import reconstruction_errors

    models = load_bundle(args.bundle, device=args.device)
    pipe, cfg = models.pipe, models.info["config"]
    frames, size = int(cfg["frames"]), int(cfg["size"])
    if args.clips:
        errors = reconstruction_errors(pipe.vae, frames, size, args.clips, torch.device(args.device))
        print(json.dumps(errors))
        for name in ("sprite", "background"):
            print(f"{name:>10} L1 per frame: " + " ".join(f"{v:.2f}" for v in errors[name]))
    from PIL import Image

    def sample(prompt: str, num_frames: int, seed: int) -> np.ndarray:
        video = pipe(prompt, num_frames=num_frames, height=size, width=size, num_inference_steps=30,
                     guidance_scale=5.0, output_type="np", generator=torch.Generator().manual_seed(seed)).frames[0]
        return (video * 255).round().astype(np.uint8)

    def row(video: np.ndarray) -> np.ndarray:
        return frame_strip([video], 5)

    def lora_row() -> np.ndarray:
        return np.concatenate([sample(args.lora_still, 1, 0)[0], row(sample(args.lora_video, frames, 0))], 1)

    if args.lora:
        from smrabooth.lora import load_lora, load_loras_into_transformer

        without = lora_row()
        load_loras_into_transformer(pipe.transformer, {"check": (load_lora(args.lora), None)}, {"check": args.lora})
        Image.fromarray(np.concatenate([lora_row(), without], 0)).save(args.lora_samples)
        print(f"wrote {args.lora_samples} (top: with {args.lora}; bottom: without)")
    if args.samples:
        rows = [row(sample(prompt, frames, i)) for i, prompt in enumerate(PROMPTS)]
        rows.append(np.concatenate([sample(prompt, 1, 0)[0] for prompt in STILLS], 1))
        Image.fromarray(np.concatenate(rows, 0)).save(args.samples)
        print(f"wrote {args.samples}")
    if args.prompt_rows:
        rows = [row(sample(prompt, frames, 0)) for prompt in args.prompt or PROMPT_ROWS]
        Image.fromarray(np.concatenate(rows, 0)).save(args.prompt_rows)
        print(f"wrote {args.prompt_rows}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
