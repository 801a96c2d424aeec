"""What both sides of the parity harness share: the tiny sizes, the inputs, and the exchange folder.

This file is imported in two environments: the project's (scripts/check_official_parity.py, tests) and the
authors' pinned one (theirs.py). It needs only torch, numpy, PIL and safetensors, and nothing of either
side's code.

Sizes are the tiny models' and the inputs' (never a setting of the method: those are read from the authors'
files on their side and from the `official` recipe on ours):
- the DiT: 3 blocks (SuRA reads the third), 2 heads of 12 (a multiple of 6: their RoPE splits a head in thirds,
  diffusers' in sixths, and only then do the two agree), FFN 64, text width 32;
- the VAE: the real layout (width multipliers 1, 2, 4, 4, two residual blocks per level: diffusers' key
  converter assumes it) at base width 4;
- DINOv2: 2 layers of width 32, patch 14;
- SEA-RAFT: the spring-M network narrowed (ResNet-18 layout, widths 8/16/24, update width 16; radius, iterations
  and scale are the authors'): the full widths cost minutes per MoRA step on a CPU;
- subject images 512x512 (their DINOv2 input is hard-wired to 512 -> 448); motion clips 256x256 (the smallest
  SEA-RAFT takes at scale -1); a clip of 49 frames at 16 fps (as their clips) trained on its first 33 (9 latents,
  so that three MoRA steps visit windows 0, 2 and, after their wrap rule, 0 again).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

DIT = {"num_layers": 3, "num_heads": 2, "head_dim": 12, "ffn_dim": 64, "text_dim": 32, "freq_dim": 32}
VAE = {"base_dim": 4, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2}
DINO = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "patch_size": 14, "image_size": 518}
SEARAFT_SIZES = {"pretrain": "resnet18", "initial_dim": 8, "block_dims": [8, 16, 24], "dim": 16}
SUBJECT_SIZE = 512  # the training size (their script's --height/--width)
SUBJECT_FILE_SIZE = (600, 640)  # height, width of the image files: both sides resize and crop them
MOTION_SIZE = (256, 256)  # height, width of the training frames
MOTION_FILE_SIZE = (288, 320)  # of the clip's frames in the file
CLIP_FRAMES, MOTION_FPS = 49, 16  # the clip: their clips' length and rate
MOTION_FRAMES = 33  # frames trained on (--num_frames): the clip's first 33
SUBJECT_IMAGES = 2
TEXT_TOKENS = 16  # prompt embeddings (1, TEXT_TOKENS, text_dim) on both sides
SEED = 20260218

SUBJECT_PROMPT = "A picture of sks dog"
MOTION_PROMPT = "a dog is vvt walking"


# ---------------------------------------------------------------- procedural inputs
def _smooth_field(rng: np.random.Generator, h: int, w: int, channels: int, cells: int = 6) -> np.ndarray:
    """A smooth random image in [0, 1]: bilinear upsampling of a coarse random grid."""
    coarse = torch.from_numpy(rng.random((1, channels, cells, cells)).astype(np.float32))
    fine = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    return fine[0].permute(1, 2, 0).clamp(0, 1).numpy()


def subject_images(seed: int = SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image uint8 HxWx3, mask uint8 HxW of 0/255) pairs: a textured ellipse (the subject) on a background, at a
    size other than the training size (as the authors' 780x780 photos), so that loading resizes and crops."""
    rng = np.random.default_rng(seed)
    out = []
    h, w = SUBJECT_FILE_SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    yy, xx = yy / h, xx / w
    for i in range(SUBJECT_IMAGES):
        background = _smooth_field(rng, h, w, 3)
        subject = _smooth_field(rng, h, w, 3, cells=12)
        cy, cx, ry, rx = 0.45 + 0.1 * i, 0.5 - 0.08 * i, 0.22, 0.3
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        image = np.where(inside[..., None], subject, background)
        out.append(((image * 255).round().astype(np.uint8), (inside * 255).astype(np.uint8)))
    return out


def motion_frames(seed: int = SEED + 1) -> np.ndarray:
    """(frames, H, W, 3) uint8: a textured square moving right and down over a slowly panning background, at a size
    other than the training size."""
    rng = np.random.default_rng(seed)
    h, w = MOTION_FILE_SIZE
    big = _smooth_field(rng, h + 64, w + 64, 3, cells=10)
    square = _smooth_field(rng, 64, 64, 3, cells=5) * 0.6 + 0.4
    frames = []
    for t in range(CLIP_FRAMES):
        frame = big[t // 2: t // 2 + h, t // 3: t // 3 + w].copy()
        y, x = 40 + 2 * t, 30 + 3 * t
        frame[y: y + 64, x: x + 64] = square
        frames.append((frame * 255).round().astype(np.uint8))
    return np.stack(frames)


def write_inputs(root: Path) -> dict:
    """The subject folder and the motion folder, in the authors' layout (metadata.csv columns video,mask,prompt
    and video,prompt); returns their paths."""
    from PIL import Image

    subject = root / "subject" / "dog"
    (subject / "images").mkdir(parents=True, exist_ok=True)
    (subject / "masks").mkdir(parents=True, exist_ok=True)
    rows = ["video,mask,prompt"]
    for i, (image, mask) in enumerate(subject_images()):
        Image.fromarray(image).save(subject / "images" / f"{i:02d}.png")
        Image.fromarray(mask, mode="L").save(subject / "masks" / f"{i:02d}.png")
        rows.append(f"images/{i:02d}.png,masks/{i:02d}.png,{SUBJECT_PROMPT}")
    (subject / "metadata.csv").write_text("\n".join(rows) + "\n")

    videos = root / "motion" / "video"
    motion = videos / "walk"
    motion.mkdir(parents=True, exist_ok=True)
    write_lossless_video(motion_frames(), motion / "00.mp4", MOTION_FPS)
    (motion / "metadata.csv").write_text(f'video,prompt\nwalk/00.mp4,"{MOTION_PROMPT}"\n')
    return {"subject": subject, "motion": motion, "videos": videos}


def write_lossless_video(frames: np.ndarray, path: Path, fps: int) -> None:
    """RGB frames as lossless H.264 (libx264rgb, qp 0): every decoder gives back the same pixels."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "rgb24"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ---------------------------------------------------------------- exchange files
def save(path: Path, tensors: dict, meta: dict | None = None) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path),
              metadata={"json": json.dumps(meta or {})})


def load(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {}).get("json", "{}"))
        return {k: f.get_tensor(k) for k in f.keys()}, meta  # noqa: SIM118 (safe_open has no __iter__)


def noise(seed: int, shape) -> torch.Tensor:
    """The noise of one training sample: both sides draw it from this seed (CPU generator, fp32)."""
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float32)


def seeded_values(name: str, shape, bound: float) -> torch.Tensor:
    """Uniform values in [-bound, bound] from a seed that depends on `name` only: the initial LoRA and SuRA
    projector both sides start from (set in the authors' process, loaded in ours, and rebuilt by the CI test)."""
    import zlib

    g = torch.Generator().manual_seed(SEED + zlib.crc32(name.encode()))
    return (torch.rand(tuple(shape), generator=g, dtype=torch.float32) * 2 - 1) * bound


def initial_value(name: str, shape) -> torch.Tensor:
    """LoRA A as peft's kaiming-uniform bound (1/sqrt(fan_in)); LoRA B small but not 0, so that every LoRA acts from
    the first step (a LoRA that should not act, or should, shows in every output); projector weights and biases as
    torch's Linear bound."""
    if "lora_B" in name:
        return seeded_values(name, shape, 0.03)
    fan_in = shape[-1] if len(shape) > 1 else 2048
    return seeded_values(name, shape, 1.0 / fan_in ** 0.5)
