"""VBench's Aesthetic Quality: the LAION aesthetic predictor on CLIP ViT-L/14 image embeddings.

Reference: vbench/aesthetic_quality.py. Frames go through VBench's clip_transform (shorter side 224,
bicubic without antialias, centre crop), the CLIP ViT-L/14 image embedding is L2-normalised and fed to
LAION's linear head (768 -> 1, `sa_0_4_vit_l_14_linear.pth` from LAION-AI/aesthetic-predictor, which
the user supplies); per-frame score / 10, mean over frames, x100.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .clip_metrics import ClipEmbedder, load_clip
from .common import ModelLoadError
from .preprocess import vbench_clip_transform

DEFAULT_AESTHETIC_CLIP = "openai/clip-vit-large-patch14"
LAION_HEAD_URL = "https://github.com/LAION-AI/aesthetic-predictor/raw/main/sa_0_4_vit_l_14_linear.pth"


@dataclass
class AestheticScorer:
    clip: ClipEmbedder
    head: torch.nn.Linear


def load_aesthetic_head(path) -> torch.nn.Linear:
    """LAION's linear head: a state dict with weight (1, D) and bias (1,), .pth or .safetensors."""
    path = Path(path) if path else None
    if path is None or not path.is_file():
        raise ModelLoadError(f"aesthetic: the LAION head file {path} does not exist; download {LAION_HEAD_URL} "
                             "and pass it with --aesthetic-head")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(f"aesthetic: cannot read {path} ({e})") from None
    sd = {k.split(".")[-1]: v for k, v in sd.items()}  # tolerate 'layers.0.weight'-style prefixes
    if "weight" not in sd or sd["weight"].ndim != 2 or sd["weight"].shape[0] != 1:
        raise ModelLoadError(f"aesthetic: {path} is not a linear D->1 head (keys {sorted(sd)})")
    head = torch.nn.Linear(sd["weight"].shape[1], 1)
    head.load_state_dict({"weight": sd["weight"], "bias": sd.get("bias", torch.zeros(1))})
    return head


def load_aesthetic(head_path, clip_name_or_path: str = DEFAULT_AESTHETIC_CLIP, device=None,
                   local_files_only=None, batch_size: int = 32) -> AestheticScorer:
    head = load_aesthetic_head(head_path)
    clip = load_clip(clip_name_or_path, device, local_files_only, batch_size)
    # VBench's own tensor transform, not the HF processor (224 for ViT-L/14; the model's size for tiny ones)
    clip.transform = vbench_clip_transform(clip.model.config.vision_config.image_size)
    dim = clip.model.config.projection_dim
    if head.in_features != dim:
        raise ModelLoadError(f"aesthetic: the head {head_path} takes {head.in_features}-d embeddings but "
                             f"{clip_name_or_path} gives {dim}-d ones (LAION's ViT-L/14 head needs a ViT-L/14 CLIP)")
    head.to(clip.device).eval()  # fp32 head on fp32 normalised embeddings, as VBench
    return AestheticScorer(clip, head)


@torch.no_grad()
def aesthetic_quality(scorer: AestheticScorer, frames) -> float:
    emb = F.normalize(scorer.clip.images(frames), dim=-1)
    scores = scorer.head(emb).squeeze(-1)
    return (scores / 10).mean().item() * 100
