"""Text-prompted subject masks, the LangSAM recipe: an open-vocabulary detector (GroundingDINO) finds
the box of "a dog", SAM turns the best box into a mask. Both through transformers.

Each part is a small wrapper with one method, so a stub with the same method can stand in for it:
    detector.detect(image, prompt) -> list[Detection]  (best first)
    sam.segment(image, box) -> float (H, W) mask probabilities
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import SmraboothError
from .masks import MaskSettings, clean_mask

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"  # or IDEA-Research/grounding-dino-base
DEFAULT_SAM = "facebook/sam-vit-base"  # or facebook/sam-vit-large, facebook/sam-vit-huge


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the input image
    score: float
    label: str


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _offline(id_or_path: str, local_files_only: bool | None) -> bool:
    if os.path.isdir(id_or_path):
        return True
    if local_files_only is None:
        return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    return local_files_only


def _load(what: str, id_or_path, model_cls, local_files_only, flag):
    """(model, processor) with one clear error for a missing folder or an unreachable hub."""
    from transformers import AutoProcessor

    id_or_path = str(id_or_path)
    offline = _offline(id_or_path, local_files_only)
    try:
        processor = AutoProcessor.from_pretrained(id_or_path, local_files_only=offline)
        model = model_cls.from_pretrained(id_or_path, local_files_only=offline)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SmraboothError(f"could not load the {what} {id_or_path}: {first}. Offline, download it elsewhere "
                             f"(huggingface-cli download {id_or_path} --local-dir DIR) and pass {flag} DIR") from None
    return model.eval(), processor


def normalize_prompt(prompt: str) -> str:
    """GroundingDINO wants lower case phrases ending with a period ("a dog.")."""
    prompt = prompt.strip().lower()
    if not prompt:
        raise SmraboothError("the object prompt is empty: pass e.g. --object-prompt 'a dog'")
    return prompt if prompt.endswith(".") else prompt + "."


class GroundingDinoDetector:
    """Open-vocabulary boxes for a text prompt (transformers' GroundingDinoForObjectDetection)."""

    def __init__(self, model, processor, box_threshold: float = 0.35, text_threshold: float = 0.25,
                 device: str | None = None):
        self.device = device or _default_device()
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.box_threshold, self.text_threshold = box_threshold, text_threshold

    @classmethod
    def from_pretrained(cls, id_or_path=DEFAULT_DETECTOR, local_files_only: bool | None = None, **kwargs):
        from transformers import GroundingDinoForObjectDetection

        model, processor = _load("detector", id_or_path, GroundingDinoForObjectDetection, local_files_only,
                                 "--detector")
        return cls(model, processor, **kwargs)

    def detect(self, image, prompt: str) -> list[Detection]:
        """Boxes with score >= box_threshold, best first (empty when the prompt is not found)."""
        import torch

        inputs = self.processor(images=image, text=normalize_prompt(prompt), return_tensors="pt").to(self.device)
        with torch.no_grad():
            outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.box_threshold, text_threshold=self.text_threshold,
            target_sizes=[(image.height, image.width)])[0]
        labels = result["text_labels"] if "text_labels" in result else result["labels"]  # older transformers
        dets = [Detection(tuple(float(v) for v in box), float(score), str(label))
                for box, score, label in zip(result["boxes"].tolist(), result["scores"].tolist(), labels)]
        return sorted(dets, key=lambda d: -d.score)


class SamSegmenter:
    """Box-prompted masks (transformers' SamModel); keeps the one of SAM's three proposals with the best
    predicted IoU."""

    def __init__(self, model, processor, device: str | None = None):
        self.device = device or _default_device()
        self.model = model.to(self.device).eval()
        self.processor = processor

    @classmethod
    def from_pretrained(cls, id_or_path=DEFAULT_SAM, local_files_only: bool | None = None, **kwargs):
        from transformers import SamModel

        model, processor = _load("SAM model", id_or_path, SamModel, local_files_only, "--sam")
        return cls(model, processor, **kwargs)

    def segment(self, image, box) -> np.ndarray:
        """float32 (H, W) probabilities that each pixel belongs to the object in `box` (x0, y0, x1, y1)."""
        import torch

        inputs = self.processor(images=image, input_boxes=[[list(map(float, box))]], return_tensors="pt")
        inputs = inputs.to(self.device)
        with torch.no_grad():
            out = self.model(**inputs, multimask_output=True)
        logits = self.processor.post_process_masks(out.pred_masks.cpu(), inputs["original_sizes"].cpu(),
                                                   inputs["reshaped_input_sizes"].cpu(), binarize=False)[0]
        best = int(out.iou_scores[0, 0].argmax())  # (1 image, 1 box, 3 proposals)
        return torch.sigmoid(logits[0, best].float()).numpy()


@dataclass
class SegmentResult:
    mask: np.ndarray | None  # bool (H, W); None when nothing was found
    detection: Detection | None
    reason: str = ""  # why there is no mask


class TextPromptedSegmenter:
    """prompt -> best box (detector) -> SAM mask -> cleaned binary mask. With `detector=None`, SAM is
    prompted with the whole image (the subject must fill most of the photo)."""

    def __init__(self, detector, sam, settings: MaskSettings | None = None, min_area: float = 0.001):
        self.detector, self.sam = detector, sam
        self.settings = settings or MaskSettings()
        self.min_area = min_area  # masks smaller than this fraction of the image count as "not found"

    def __call__(self, image, prompt: str) -> SegmentResult:
        if self.detector is None:
            det = Detection((0.0, 0.0, float(image.width), float(image.height)), 1.0, "whole image")
        else:
            dets = self.detector.detect(image, prompt)
            if not dets:
                return SegmentResult(None, None, f"the detector found no '{prompt}'")
            det = dets[0]
        mask = clean_mask(self.sam.segment(image, det.box), self.settings)
        if mask.sum() < max(1, self.min_area * mask.size):
            return SegmentResult(None, det, f"SAM's mask in the box of '{det.label}' (score {det.score:.2f}) is empty")
        return SegmentResult(mask, det)
