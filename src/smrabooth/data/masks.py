"""Mask post-processing: soft mask -> clean binary subject mask.

SAM's masks are good but not tidy: a few stray blobs on the background and pin-holes inside the
subject (eyes, reflections) are common. The subject LoRA's region loss only sees what the mask
keeps, so we binarise, fill small holes and keep the largest connected part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class MaskSettings:
    threshold: float = 0.5  # soft mask (probabilities in [0, 1] or uint8 0..255) -> binary
    fill_holes_area: float = 0.01  # fill background holes up to this fraction of the image (0: none, 1: all)
    largest_component: bool = True  # drop every foreground part except the largest


def binarize(mask, threshold: float = 0.5) -> np.ndarray:
    """bool (H, W). uint8 masks are read as 0..255, anything else as probabilities in [0, 1]."""
    mask = np.asarray(mask)
    if mask.ndim == 3:  # (H, W, C) PNG: any channel set counts
        mask = mask.max(axis=-1)
    if mask.dtype == bool:
        return mask.copy()
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) / 255.0 > threshold
    return mask.astype(np.float32) > threshold


def fill_holes(mask: np.ndarray, max_area: int | None = None) -> np.ndarray:
    """Fill background regions enclosed by the mask with at most `max_area` pixels (None: all).

    A hole is a background component that does not touch the image border. The background is
    labelled 4-connected, the complement of the 8-connected foreground of `largest_component`, so
    a ring closed only through diagonal steps still encloses its hole.
    """
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(~mask)
    if n == 0:
        return mask.copy()
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    fill = np.ones(n + 1, dtype=bool)
    fill[0] = False  # label 0 is the foreground itself
    fill[border] = False
    if max_area is not None:
        fill &= sizes <= max_area
    return mask | fill[labels]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep only the largest 8-connected foreground component (an empty mask stays empty)."""
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def clean_mask(mask, settings: MaskSettings | None = None) -> np.ndarray:
    """binarise -> keep the largest component -> fill holes. Returns bool (H, W)."""
    s = settings or MaskSettings()
    m = binarize(mask, s.threshold)
    if s.largest_component:
        m = largest_component(m)
    if s.fill_holes_area > 0:
        max_area = None if s.fill_holes_area >= 1 else int(s.fill_holes_area * m.size)
        m = fill_holes(m, max_area)
    return m


def mask_to_png_array(mask: np.ndarray) -> np.ndarray:
    """bool (H, W) -> uint8 0/255, the on-disk form (single channel 'L' PNG)."""
    return np.asarray(mask, dtype=bool).astype(np.uint8) * 255
