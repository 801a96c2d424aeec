"""VBench's Imaging Quality: MUSIQ trained on SPAQ, through pyiqa (optional extra, non-commercial licence).

Reference: vbench/imaging_quality.py: frames shrunk so the longer side is at most 512 (bilinear, no
antialias), values in [0, 1], MUSIQ-SPAQ MOS per frame (0-100), mean over frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .common import ModelLoadError, resolve_device
from .preprocess import vbench_imaging_transform


@dataclass
class ImagingScorer:
    model: object  # a pyiqa InferenceModel
    device: torch.device


def load_imaging(checkpoint: str | None = None, device=None) -> ImagingScorer:
    """MUSIQ-SPAQ: from a local checkpoint (VBench's musiq_spaq_ckpt-358bb6af.pth) or pyiqa's 'musiq-spaq'."""
    try:
        import pyiqa
    except Exception as e:
        raise ModelLoadError(f"imaging: pyiqa is not usable ({e}); install the optional extra: "
                             "pip install 'smrabooth[iqa]' (pyiqa's licence is non-commercial)") from None
    device = resolve_device(device)
    try:
        if checkpoint:  # exactly VBench's construction: the MUSIQ architecture with the SPAQ checkpoint
            from pyiqa.archs.musiq_arch import MUSIQ

            model = MUSIQ(pretrained_model_path=str(checkpoint)).to(device).eval()
        else:
            model = pyiqa.create_metric("musiq-spaq", device=device, as_loss=False)
    except Exception as e:
        raise ModelLoadError(f"imaging: cannot load MUSIQ-SPAQ ({e}); pass a local checkpoint with "
                             "--musiq-checkpoint") from None
    return ImagingScorer(model, device)


@torch.no_grad()
def imaging_quality(scorer: ImagingScorer, frames) -> float:
    x = vbench_imaging_transform(512)(frames, device=scorer.device)
    # VBench scores one frame at a time (MUSIQ takes any size, but batch elements must share one)
    return sum(float(scorer.model(x[i:i + 1])) for i in range(len(x))) / len(x)
