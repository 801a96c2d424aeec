"""The size of each quirk of the authors' code that the `official` recipe reproduces or leaves out (docs/method.md,
"The paper's text, their code as written, their code as it runs"), measured on data, not argued.

    python benchmarks/official_quirks.py --data THEIR_DATASETS [--clips 8] [--out quirks.json]

THEIR_DATASETS is the `datasets/` folder of their repository (exported outside this project); files absent from
a partial copy are skipped. CPU, a few minutes. Prints one line per quirk:

  mask      their mask rule against the binary mask through the same latent-grid resize (the rule `official`
            used before) and against `paper`'s area rule: subject cells on the 64x64 grid of a 512 crop, every
            mask of their dataset
  dinov2    their DINOv2 input (normalise, plain bicubic 512 -> 448) against the antialiased one: PSNR, their images
  resize    Pillow's bilinear against bicubic at the training size: PSNR, their images (512) and clips (576x320)
  range     SEA-RAFT (the SMRA-Sprites bundle's, a trained model; sprite clips with their true flow) on frames in
            [0, 255] and on frames as their MoRA hands it the prediction, [-255, 255]: end-point error against the
            true flow, and their MoRA loss (flow / size units) between the two flows, i.e. the loss of a perfect
            prediction, beside the loss of a still one (zero flow)
  offset    their MoRA reference frames against the matching ones (4s+5 .. 4s+20) for the windows of a 49-frame
            clip: their loss between the two reference flows (again a perfect prediction's), beside a still one's
  bf16      AdamW steps of lr 1e-4 on a LoRA's initial A matrix (peft's init, 1536 inputs) and on a trained-size
            B: share of entries a bf16 step leaves unchanged, and a weight-decay step's
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SRC = Path(__file__).resolve().parents[1] / "src"
if SRC.is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def subject_files(root: Path):
    from smrabooth.data.folders import find_subject_folders

    for name, folder in find_subject_folders(root).items():
        for mask in sorted((folder / "masks").glob("*.png")):
            images = [p for p in (folder / "images").glob(mask.stem + ".*")] if (folder / "images").is_dir() else []
            yield name, mask, images[0] if images else None


def measure_masks(root: Path, size: int = 512) -> dict:
    from PIL import Image

    from smrabooth.data.subject import load_training_mask, mask_to_latent_grid

    grid = (size // 8, size // 8)
    authors, binary, area = [], [], []
    for _, mask, _ in subject_files(root):
        with Image.open(mask) as im:
            image_size = im.size
        soft = load_training_mask(mask, image_size, size, "bilinear")
        hard = load_training_mask(mask, image_size, size, "area")
        authors.append(float(mask_to_latent_grid(soft, grid, "bilinear").sum()))
        binary.append(float(mask_to_latent_grid(hard, grid, "bilinear").sum()))
        area.append(float(mask_to_latent_grid(hard, grid, "area").sum()))
    a, b, c = map(np.array, (authors, binary, area))
    return {"masks": len(a), "cells_authors": float(a.mean()), "cells_binary_bilinear": float(b.mean()),
            "area_weight_sum": float(c.mean()), "extra_cells_vs_binary": float(((a - b) / b).mean()),
            "max_extra_cells_vs_binary": float(((a - b) / b).max())}


def measure_images(root: Path, size: int = 512) -> dict:
    from PIL import Image

    from smrabooth.data.folders import load_image
    from smrabooth.data.transforms import resize_center_crop
    from smrabooth.models.dinov2 import IMAGENET_MEAN, IMAGENET_STD

    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    filt, dino = [], []
    for _, _, image in subject_files(root):
        if image is None:
            continue
        pil = load_image(image)
        to_t = lambda im: torch.from_numpy(np.asarray(im, np.float32) / 255).permute(2, 0, 1)[None]
        bilinear, bicubic = (to_t(resize_center_crop(pil, size, f)) for f in (Image.BILINEAR, Image.BICUBIC))
        filt.append(psnr(bilinear, bicubic))
        target = (448, 448)
        plain = F.interpolate((bilinear - mean) / std, size=target, mode="bicubic", align_corners=False) * std + mean
        smooth = F.interpolate(bilinear, size=target, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        dino.append(psnr(plain, smooth))
    return {"images": len(filt), "resize_psnr_bilinear_vs_bicubic": float(np.mean(filt)),
            "dinov2_input_psnr_plain_vs_antialias": float(np.mean(dino)),
            "dinov2_input_psnr_min": float(np.min(dino)) if dino else None}


def measure_clips(root: Path) -> dict:
    from smrabooth.data.folders import find_motion_folders, read_motion_folder
    from smrabooth.data.motion import load_motion_frames

    out = []
    for folder in find_motion_folders(root).values():
        for item in read_motion_folder(folder):
            a = load_motion_frames(item.video_path, 49, 15, 320, 576, timing="first", resize_filter="bilinear")
            b = load_motion_frames(item.video_path, 49, 15, 320, 576, timing="first", resize_filter="bicubic")
            out.append(psnr(a, b))
    return {"clips": len(out), "resize_psnr_bilinear_vs_bicubic": float(np.mean(out))}


def measure_flow(n_clips: int) -> dict:
    """SEA-RAFT of the SMRA-Sprites bundle on sprite clips of 49 frames with their true flow."""
    from smrabooth.align.mora import flow_l1, window_ref_flows, window_starts
    from smrabooth.models.searaft import compute_flow, load_searaft
    from smrabooth_sprites.bundle import bundled_model_dir, get_preset, read_bundle_info
    from smrabooth_sprites.world import sample_clip

    path = bundled_model_dir()
    size = get_preset(read_bundle_info(path).get("preset", "small")).size
    model = load_searaft(str(path / "searaft")).float().eval()
    epe_matched, epe_authors, floor, still, offset, offset_still = [], [], [], [], [], []
    for seed in range(n_clips):
        clip = sample_clip(1_000_000 + seed, "train", frames=49, size=size)
        x = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float() / 255
        true = torch.from_numpy(clip.flow)
        with torch.no_grad():
            matched = torch.cat([compute_flow(model, x[i:i + 8], x[i + 1:i + 9]) for i in range(0, 48, 8)])
            y = 2 * x - 1  # what their MoRA hands SEA-RAFT for a prediction: the decode's [-1, 1], x 255 inside
            authors = torch.cat([compute_flow(model, y[i:i + 8], y[i + 1:i + 9]) for i in range(0, 48, 8)])
        sprite = torch.from_numpy(clip.masks[:-1]).float()  # where the true flow is not zero
        for flows, out in ((matched, epe_matched), (authors, epe_authors)):
            out.append(float(((flows - true).norm(dim=1) * sprite).sum() / sprite.sum()))
        floor.append(float(flow_l1(authors, matched, "size")))
        still.append(float(flow_l1(torch.zeros_like(matched), matched, "size")))
        for s in window_starts(13, 6, 2, "reach"):
            ours = window_ref_flows(matched, s, 6, 5)
            first = 0 if s == 0 else 1 + 4 * (s - 1)
            theirs = matched[first:first + ours.shape[0]]
            offset.append(float(flow_l1(theirs, ours, "size")))
            offset_still.append(float(flow_l1(torch.zeros_like(ours), ours, "size")))
    return {"clips": n_clips, "size": size, "epe_on_sprite_matched": float(np.mean(epe_matched)),
            "epe_on_sprite_authors_range": float(np.mean(epe_authors)),
            "mora_loss_perfect_prediction_authors_range": float(np.mean(floor)),
            "mora_loss_still_prediction": float(np.mean(still)),
            "mora_loss_reference_offset": float(np.mean(offset)),
            "mora_loss_still_prediction_windows": float(np.mean(offset_still))}


def measure_bf16(steps: int = 20) -> dict:
    """Share of LoRA entries a bf16 AdamW step (lr 1e-4, weight decay 0.01, torch's AdamW as theirs) leaves
    unchanged, over steps 10-20 with random unit-variance gradients: A at peft's initialisation (kaiming-uniform,
    1536 inputs), B at magnitudes 0.01-0.05, and B with no gradient (weight decay alone)."""
    g = torch.Generator().manual_seed(0)
    a_init = lambda: (torch.rand(64, 1536, generator=g) * 2 - 1) / 1536 ** 0.5
    b_init = lambda: (torch.rand(1536, 64, generator=g) * 0.04 + 0.01) * torch.randn(1536, 64, generator=g).sign()
    out = {}
    for name, init, grad_scale in (("A at init", a_init, 1.0), ("B at 0.01-0.05", b_init, 1.0),
                                   ("weight decay alone", b_init, 0.0)):
        for dtype in (torch.bfloat16, torch.float32):
            p = torch.nn.Parameter(init().to(dtype))
            opt = torch.optim.AdamW([p], lr=1e-4, weight_decay=0.01)
            unchanged = []
            for _ in range(steps):
                before = p.detach().clone()
                p.grad = (torch.randn(p.shape, generator=g) * grad_scale).to(dtype)
                opt.step()
                unchanged.append(float((p.detach() == before).float().mean()))
            out[f"{name} ({'bf16' if dtype == torch.bfloat16 else 'fp32'})"] = float(np.mean(unchanged[steps // 2:]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="their datasets/ folder")
    p.add_argument("--clips", type=int, default=8, help="sprite clips for the SEA-RAFT rows")
    p.add_argument("--out", help="write the numbers as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    root = Path(args.data)
    results = {"mask": measure_masks(root), "images": measure_images(root), "clips": measure_clips(root),
               "flow": measure_flow(args.clips), "bf16": measure_bf16()}
    m, im, c, f, b = (results[k] for k in ("mask", "images", "clips", "flow", "bf16"))
    print(f"mask    {m['masks']} masks at 512: their rule {m['cells_authors']:.0f} subject cells of 4096, the binary "
          f"mask through the same grid resize {m['cells_binary_bilinear']:.0f} (+{100 * m['extra_cells_vs_binary']:.1f}%"
          f" on average, at most +{100 * m['max_extra_cells_vs_binary']:.0f}%); area rule weight {m['area_weight_sum']:.0f}")
    print(f"dinov2  {im['images']} images: plain bicubic 448 vs antialiased, "
          f"PSNR {im['dinov2_input_psnr_plain_vs_antialias']:.1f} dB (lowest {im['dinov2_input_psnr_min']:.1f})")
    print(f"resize  bilinear vs bicubic: images PSNR {im['resize_psnr_bilinear_vs_bicubic']:.1f} dB, "
          f"clips {c['resize_psnr_bilinear_vs_bicubic']:.1f} dB ({c['clips']} clips)")
    still = f["mora_loss_still_prediction"]
    print(f"range   {f['clips']} sprite clips ({f['size']}px): SEA-RAFT end-point error on the sprite "
          f"{f['epe_on_sprite_matched']:.2f} px in [0, 255], {f['epe_on_sprite_authors_range']:.2f} px in [-255, 255]; "
          f"their MoRA loss of a perfect prediction {f['mora_loss_perfect_prediction_authors_range']:.3g} "
          f"({100 * f['mora_loss_perfect_prediction_authors_range'] / still:.0f}% of a still prediction's, {still:.3g})")
    share = 100 * f["mora_loss_reference_offset"] / f["mora_loss_still_prediction_windows"]
    print(f"offset  their reference frames vs the matching ones: MoRA loss of a perfect prediction "
          f"{f['mora_loss_reference_offset']:.3g} ({share:.0f}% "
          f"of a still prediction's, {f['mora_loss_still_prediction_windows']:.3g})")
    print("bf16    share of entries a bf16 AdamW step leaves unchanged: "
          + ", ".join(f"{k} {100 * v:.0f}%" for k, v in b.items()))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
