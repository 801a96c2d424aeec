"""PickScore (Kirstain et al., NeurIPS 2023), averaged over frames.

Reference: the PickScore model card's inference code: model `yuvalkirstain/PickScore_v1` (a CLIPModel),
processor `laion/CLIP-ViT-H-14-laion2B-s32B-b79K`; score = logit_scale.exp() * cos(text, image).
"""

from __future__ import annotations

from .clip_metrics import ClipEmbedder, load_clip
from .common import cosine_matrix

DEFAULT_PICKSCORE = "yuvalkirstain/PickScore_v1"
DEFAULT_PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


def load_pickscore(name_or_path: str = DEFAULT_PICKSCORE, processor: str = DEFAULT_PICKSCORE_PROCESSOR,
                   device=None, local_files_only=None, batch_size: int = 32) -> ClipEmbedder:
    return load_clip(name_or_path, device, local_files_only, batch_size, processor=processor)


def pickscore(emb: ClipEmbedder, frames, prompt: str) -> float:
    scale = emb.model.logit_scale.float().exp().item()
    return scale * cosine_matrix(emb.texts([prompt]), emb.images(frames)).mean().item()
