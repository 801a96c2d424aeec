"""The real GroundingDINO / SAM wrappers on tiny random-weight transformers models (no downloads)."""

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_segment_models import tiny_grounding_dino, tiny_sam

from smrabooth.data.masks import MaskSettings, clean_mask
from smrabooth.data.segment import (
    Detection,
    GroundingDinoDetector,
    SamSegmenter,
    TextPromptedSegmenter,
    normalize_prompt,
)
from smrabooth.errors import SmraboothError


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for name, (model, processor) in {"gd": tiny_grounding_dino(), "sam": tiny_sam()}.items():
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
    return root


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))


def test_normalize_prompt():
    assert normalize_prompt("  A Dog ") == "a dog."
    assert normalize_prompt("a cat.") == "a cat."
    with pytest.raises(SmraboothError, match="empty"):
        normalize_prompt(" ")


def test_detector_loads_from_folder_and_honours_threshold(saved_models, image):
    det = GroundingDinoDetector.from_pretrained(saved_models / "gd", box_threshold=0.0, text_threshold=0.0,
                                                device="cpu")
    # reference computed from the raw model output: a query's score is its best text-token sigmoid
    inputs = det.processor(images=image, text="a dog.", return_tensors="pt")
    with torch.no_grad():
        logits = det.model(**inputs).logits[0]
    ref_scores = torch.sigmoid(logits).max(-1).values.sort(descending=True).values.numpy()
    found = det.detect(image, "a dog")
    assert len(found) == len(ref_scores) == 10
    scores = np.array([d.score for d in found])
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)  # all kept, best first
    assert all(isinstance(d, Detection) and len(d.box) == 4 for d in found)
    assert all(d.box[0] <= d.box[2] and d.box[1] <= d.box[3] for d in found)

    cut = float(np.median(ref_scores))
    det.box_threshold = cut
    kept = det.detect(image, "a dog")
    assert len(kept) == int((ref_scores > cut).sum()) and all(d.score > cut for d in kept)
    det.box_threshold = 1.01  # nothing can pass
    assert det.detect(image, "a dog") == []


def test_sam_mask_shape_range_and_box_dependence(saved_models, image):
    sam = SamSegmenter.from_pretrained(saved_models / "sam", device="cpu")
    a = sam.segment(image, (5, 5, 40, 30))
    assert a.shape == (50, 70) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, sam.segment(image, (5, 5, 40, 30)))  # deterministic
    assert np.abs(a - sam.segment(image, (30, 20, 69, 49))).max() > 1e-4  # the box prompt is used


def test_text_prompted_segmenter_end_to_end_on_tiny_models(saved_models, image):
    det = GroundingDinoDetector.from_pretrained(saved_models / "gd", box_threshold=0.0, device="cpu")
    sam = SamSegmenter.from_pretrained(saved_models / "sam", device="cpu")
    settings = MaskSettings(threshold=0.5)
    r = TextPromptedSegmenter(det, sam, settings, min_area=0.0)(image, "a dog")
    best = det.detect(image, "a dog")[0]
    assert r.detection == best
    expected = clean_mask(sam.segment(image, best.box), settings)
    if expected.any():
        np.testing.assert_array_equal(r.mask, expected)
    else:
        assert r.mask is None and "empty" in r.reason
    det.box_threshold = 1.01
    r = TextPromptedSegmenter(det, sam)(image, "a dog")
    assert r.mask is None and r.detection is None and "found no 'a dog'" in r.reason


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(SmraboothError, match="--detector"):
        GroundingDinoDetector.from_pretrained(tmp_path / "nothing-here", local_files_only=True)
    with pytest.raises(SmraboothError, match="--sam"):
        SamSegmenter.from_pretrained("someone/not-a-model", local_files_only=True)
