"""DINO embeddings: DINO-I (DINOv2 by default, DINO v1 ViT-S/16 as in DreamVideo) and the DINO v1
ViT-B/16 features of VBench's subject consistency.

The embedding is the CLS token of the last hidden state (after the final layer norm), which is what the
torch.hub DINO/DINOv2 models return. For DINO v1 in transformers (ViTModel) `pooler_output` is an extra
dense+tanh layer that the DINO checkpoints never trained, so it must not be used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .common import cosine_matrix, embed_frames, load_pretrained, model_dtype, resolve_device
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, load_transform

DEFAULT_DINO = "facebook/dinov2-base"  # sizes: facebook/dinov2-{small,base,large,giant}
DREAMVIDEO_DINO = "facebook/dino-vits16"
VBENCH_DINO = "facebook/dino-vitb16"

# DINOv2: what its processor does, for folders without a preprocessor_config.json
DINOV2_TRANSFORM = ImageTransform("shortest_edge", 256, "bicubic", True, (224, 224), "floor", IMAGENET_MEAN, IMAGENET_STD)
# DINO v1 (DreamVideo's DINO-I): the reference's torchvision pipeline on PIL images, Resize(256, bicubic) of the
# shorter side, CenterCrop(224) (offset rounded), ImageNet normalisation. The checkpoints' own processor config
# squashes to 224x224 instead, so it is not read for DINO v1.
DINO_V1_TRANSFORM = ImageTransform("shortest_edge", 256, "bicubic", True, (224, 224), "round", IMAGENET_MEAN, IMAGENET_STD)


@dataclass
class DinoEmbedder:
    model: object  # transformers Dinov2Model or ViTModel
    transform: ImageTransform
    device: torch.device
    batch_size: int = 32

    @torch.no_grad()
    def images(self, frames) -> torch.Tensor:
        # ViT (DINO v1) needs interpolated position embeddings for non-224 inputs (VBench keeps the aspect
        # ratio); Dinov2Model always interpolates and does not take the argument.
        kw = {"interpolate_pos_encoding": True} if self.model.config.model_type == "vit" else {}
        return embed_frames(lambda b: self.model(pixel_values=b, **kw).last_hidden_state[:, 0], self.transform, frames,
                            self.device, self.model.dtype, self.batch_size)


def load_dino(name_or_path: str = DEFAULT_DINO, device=None, local_files_only=None, batch_size: int = 32,
              transform: ImageTransform | None = None) -> DinoEmbedder:
    """A DINOv2 or DINO v1 checkpoint; `transform` overrides the repo's own preprocessing (VBench)."""
    from transformers import AutoModel

    device = resolve_device(device)
    model = load_pretrained(AutoModel, name_or_path, "DINO", local_files_only)
    model.to(device, model_dtype(device)).eval()  # fp16 on GPU
    if transform is None and model.config.model_type == "vit":
        transform = DINO_V1_TRANSFORM
    elif transform is None:
        transform = load_transform(name_or_path, local_files_only, DINOV2_TRANSFORM)
    return DinoEmbedder(model, transform, device, batch_size)


def dino_i(emb: DinoEmbedder, frames, reference_images: list) -> float:
    """Mean over all (reference image, frame) pairs of the cosine of DINO CLS embeddings."""
    refs = torch.cat([emb.images(im[None]) for im in reference_images])
    return cosine_matrix(refs, emb.images(frames)).mean().item()
