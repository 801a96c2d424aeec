"""CLIP-T, CLIP-I and Temporal Consistency (DreamVideo / JointTuner style evaluation).

Reference: the evaluation scripts of DreamVideo and JointTuner, which embed each frame with the CLIP
image tower (transformers CLIPModel.get_image_features, i.e. the projected CLS token), the prompt with
the text tower, and average raw cosines over frames. Unlike CLIPScore (torchmetrics) there is no
clamp at 0, no x100 and no 2.5 weight: CLIP-T of 0.33 in the paper's table is a raw cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .common import cosine_matrix, embed_frames, features, load_pretrained, model_dtype, resolve_device
from .preprocess import ImageTransform, load_transform, openai_clip_transform

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


@dataclass
class ClipEmbedder:
    model: object  # transformers CLIPModel
    tokenizer: object
    transform: ImageTransform
    device: torch.device
    batch_size: int = 32

    @torch.no_grad()
    def images(self, frames) -> torch.Tensor:
        """uint8 (F, H, W, 3) -> (F, D) projected image embeddings (not normalised)."""
        return embed_frames(lambda b: features(self.model.get_image_features(pixel_values=b)), self.transform, frames,
                            self.device, self.model.dtype, self.batch_size)

    @torch.no_grad()
    def texts(self, prompts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt").to(self.device)
        return features(self.model.get_text_features(**tok)).float()


def load_clip(name_or_path: str = DEFAULT_CLIP, device=None, local_files_only=None, batch_size: int = 32,
              processor: str | None = None) -> ClipEmbedder:
    """CLIPModel + tokenizer + transform. `processor` names another repo for tokenizer/preprocessing (PickScore)."""
    from transformers import AutoTokenizer, CLIPModel

    device = resolve_device(device)
    model = load_pretrained(CLIPModel, name_or_path, "CLIP", local_files_only)
    model.to(device, model_dtype(device)).eval()  # fp16 on GPU
    proc = processor or name_or_path
    tokenizer = load_pretrained(AutoTokenizer, proc, "CLIP tokenizer", local_files_only)
    return ClipEmbedder(model, tokenizer, load_transform(proc, local_files_only, openai_clip_transform()), device, batch_size)


def clip_t(emb: ClipEmbedder, frames, prompt: str) -> float:
    """Mean over frames of cos(text, frame)."""
    return cosine_matrix(emb.texts([prompt]), emb.images(frames)).mean().item()


def clip_i(emb: ClipEmbedder, frames, reference_images: list) -> float:
    """Mean over all (reference image, frame) pairs of cos(image, frame)."""
    refs = torch.cat([emb.images(im[None]) for im in reference_images])  # images differ in size
    return cosine_matrix(refs, emb.images(frames)).mean().item()


def temporal_consistency(emb: ClipEmbedder, frames, pairs: str = "adjacent") -> float:
    """Mean CLIP image cosine over adjacent frame pairs (DreamVideo) or over all pairs i < j."""
    if len(frames) < 2:
        from ..errors import SmraboothError

        raise SmraboothError("temporal consistency needs a video of at least 2 frames")
    sim = cosine_matrix(*(2 * [emb.images(frames)]))
    if pairs == "adjacent":
        return torch.diagonal(sim, offset=1).mean().item()
    if pairs == "all":
        i, j = torch.triu_indices(len(sim), len(sim), offset=1)
        return sim[i, j].mean().item()
    raise ValueError(f"pairs must be 'adjacent' or 'all', got {pairs!r}")
