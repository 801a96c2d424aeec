"""Resizing to the training size: one transform shared by images, masks, encoder inputs and video frames."""

from __future__ import annotations


def resize_cover_crop(img, width: int, height: int, resample):
    """Scale so the image covers width x height, then take the centre crop (PIL image in and out).

    Nothing is stretched: the aspect ratio is kept and the longer side is cropped.
    """
    w, h = img.size
    scale = max(width / w, height / h)
    nw, nh = max(width, round(w * scale)), max(height, round(h * scale))
    img = img.resize((nw, nh), resample=resample)
    left, top = (nw - width) // 2, (nh - height) // 2
    return img.crop((left, top, left + width, top + height))


def resize_center_crop(img, size: int, resample):
    """Shorter side to `size`, then the centre `size` x `size` square."""
    return resize_cover_crop(img, size, size, resample)


RESIZE_FILTERS = ("bicubic", "bilinear")


def pil_filter(name: str):
    """A `RESIZE_FILTERS` name as Pillow's filter (bilinear: what the authors' torchvision resize of a PIL image
    runs)."""
    from PIL import Image

    from ..errors import SmraboothError

    filters = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}
    if name not in filters:
        raise SmraboothError(f"resize filter {name!r}: choose {', '.join(RESIZE_FILTERS)}")
    return filters[name]
