"""Photos of a subject -> a subject folder: images/, masks/, metadata.csv, previews.

    out/images/0001.png ...     the photos (EXIF-rotated, RGB, longest side <= max_side)
    out/masks/0001.png ...      binary masks (0/255), same names and sizes
    out/metadata.csv            file_name,text  ("a picture of V* dog")
    out/previews/0001.png ...   the mask over the photo, with the detected box, to check at a glance
    out/contact_sheet.png       all previews in one picture
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import run_folder
from ..errors import SmraboothError
from .folders import IMAGE_EXTS, METADATA, load_image, write_metadata
from .masks import binarize, mask_to_png_array

SUBJECT_TEMPLATE = "a picture of {token} {name}"
COMMAND = "prepare-subject"
PREPARED = ("images", "masks", "previews", METADATA, "contact_sheet.png")


@dataclass
class SubjectImageResult:
    source: Path
    file_name: str | None  # None: left out
    mask_fraction: float = 0.0
    score: float | None = None
    note: str = ""


def expand_inputs(paths, exts=IMAGE_EXTS, what="image") -> list[Path]:
    """Files in the given order; a folder stands for its files with a known extension, sorted by name."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in exts)
            if not found:
                raise SmraboothError(f"folder {p} holds no {what} files ({', '.join(sorted(exts))})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise SmraboothError(f"{what} {p} does not exist")
    if not files:
        raise SmraboothError(f"no {what}s given")
    return files


def check_out_folder(out: str | os.PathLike, overwrite: bool, command: str, inputs: dict, prepared=PREPARED,
                     owned=None, adopt_unmarked: bool = False) -> bool:
    """Whether `out` holds a prepared set this call replaces (nothing is changed). A folder holding none of the
    `prepared` names (and no marker) is written in place beside what it holds; one holding a set is refused
    without `overwrite`, and with it unless it is a set this command wrote that holds none of the `inputs` and
    nothing else (run_folder.check_replaceable). `owned(path)`: whether a path in the folder is one the command
    writes (default: anything in the `prepared` entries). `adopt_unmarked`: a set without the marker counts as this
    command's (the web app's own work folder, which older versions wrote unmarked)."""
    out = Path(out)
    owned = owned or run_folder.owned_names(prepared)
    if out.exists() and not out.is_dir():
        raise SmraboothError(f"--out {out}: is a file, a folder is needed")
    marker = run_folder.read_marker(out) if out.is_dir() else None
    existing = [n for n in prepared if (out / n).exists()]
    if not existing and not (marker and run_folder.entries(out)):
        return False
    run_folder.check_inputs_outside(out, inputs, "replacing the prepared set there would delete it")
    if not overwrite:
        what = existing[0] if existing else run_folder.entries(out)[0].name
        raise SmraboothError(f"{out} already holds a prepared set ({what}): pass --overwrite to replace it, or choose "
                             "another --out")
    if adopt_unmarked and marker is None:
        foreign = [f for f in run_folder.files_under(out) if not owned(f)]
        if foreign:
            raise SmraboothError(f"--out {out} holds {foreign[0]}, which smrabooth {command} did not write; refusing "
                                 "to replace the folder")
        return True
    return run_folder.check_replaceable(out, command, inputs, owned=owned, legacy="a prepared set")


def open_out_folder(out: str | os.PathLike, overwrite: bool, command: str, inputs: dict, prepared=PREPARED,
                    owned=None, adopt_unmarked: bool = False) -> Path:
    """The folder to write into: `out` itself (created and marked: whatever it already holds is recorded as not
    the command's), or a staging folder beside it when a prepared set is replaced (`run_folder.commit` swaps it in
    once everything is written)."""
    if check_out_folder(out, overwrite, command, inputs, prepared, owned, adopt_unmarked):
        return run_folder.begin(out, command)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_folder.start_marker(out, command, owned=lambda path: False)
    return out


def close_out_folder(folder: Path, command: str, owned=None) -> Path:
    """Everything is written: the staging folder (if any) replaces the old set, the marker lists the files."""
    out = run_folder.commit(folder, owned or run_folder.owned_names(PREPARED))
    run_folder.finish_marker(out, command)
    return out


def load_photo(path: Path, max_side: int | None):
    """RGB, turned upright by its EXIF orientation (phone photos), shrunk to max_side."""
    from PIL import Image

    image = load_image(path)  # clear error for unreadable files; 16-bit and palette images converted exactly
    try:
        with Image.open(path) as raw:  # phones store photos sideways plus an EXIF orientation tag
            orientation = raw.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError):  # an unreadable EXIF block: as stored
        orientation = 1
    turn = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}.get(orientation)  # what ImageOps.exif_transpose does
    if turn is not None:
        image = image.transpose(turn)
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.LANCZOS)
    return image


def match_user_masks(images: list[Path], masks_dir: str | os.PathLike) -> dict[Path, Path]:
    """image -> mask file with the same stem in masks_dir; any mismatch is an error naming the files."""
    masks_dir = Path(masks_dir)
    if not masks_dir.is_dir():
        raise SmraboothError(f"mask folder {masks_dir} does not exist")
    masks = {p.stem: p for p in sorted(masks_dir.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTS}
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        raise SmraboothError("two images share a file name stem; rename them so masks can be matched by name")
    missing = [p.name for p in images if p.stem not in masks]
    extra = sorted(set(masks) - set(stems))
    if missing:
        raise SmraboothError(f"{masks_dir} has no mask for {', '.join(missing[:5])}"
                             f"{' ...' if len(missing) > 5 else ''}: name each mask like its image "
                             f"(photo.jpg -> {masks_dir}/photo.png)" + (f"; unmatched masks: {', '.join(extra[:5])}"
                                                                       if extra else ""))
    return {p: masks[p.stem] for p in images}


def overlay(image, mask: np.ndarray | None, box=None, color=(255, 40, 40)):
    """The photo with the mask tinted and outlined and the box drawn: a quick visual check."""
    from PIL import Image, ImageDraw
    from scipy import ndimage

    rgb = np.asarray(image).astype(np.float32)
    if mask is not None:
        m = mask.astype(bool)
        rgb[m] = 0.5 * rgb[m] + 0.5 * np.array(color, np.float32)
        edge = m & ~ndimage.binary_erosion(m, iterations=max(1, min(m.shape) // 200))
        rgb[edge] = color
    else:
        rgb *= 0.4  # dimmed: no mask
    out = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    if box is not None:
        ImageDraw.Draw(out).rectangle(box, outline=(40, 255, 40), width=max(1, min(out.size) // 150))
    return out


def contact_sheet(images: list, labels: list[str], thumb: int = 256, cols: int = 4):
    from PIL import Image, ImageDraw

    cols = max(1, min(cols, len(images)))
    rows = math.ceil(len(images) / cols)
    sheet = Image.new("RGB", (cols * thumb, rows * (thumb + 14)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (im, label) in enumerate(zip(images, labels)):
        t = im.copy()
        t.thumbnail((thumb, thumb))
        x, y = (i % cols) * thumb, (i // cols) * (thumb + 14)
        sheet.paste(t, (x + (thumb - t.width) // 2, y + (thumb - t.height) // 2))
        draw.text((x + 2, y + thumb + 1), label[:40], fill=(0, 0, 0))
    return sheet


def user_mask(path: Path, src: Path, photo) -> np.ndarray:
    """The user's own mask of `photo` (read from `src`), binarised, at the photo's size (shrunk with it)."""
    from PIL import Image

    user = load_image(path)
    if abs(user.width / user.height - photo.width / photo.height) > 0.02:
        raise SmraboothError(f"mask {path} is {user.width}x{user.height}, the shape of no upright "
                             f"version of {src}: masks must have the size of their images")
    if user.size != photo.size:  # the photo was shrunk to max_side: shrink its mask alike
        user = user.resize(photo.size, Image.NEAREST)
    mask = binarize(np.asarray(user))  # the user's own mask is taken as it is, only binarised
    if not mask.any():
        raise SmraboothError(f"mask {path} is all black: fix it or remove {src}")
    return mask


def _write_set(out: Path, files, photos, user_arrays, segmenter, object_prompt, on_not_found, token, name, log):
    """images/, masks/, previews/, metadata.csv and contact_sheet.png into `out`; returns (results, rows, text)."""
    from tqdm import tqdm

    (out / "images").mkdir()
    has_masks = bool(user_arrays) or segmenter is not None
    if has_masks:
        (out / "masks").mkdir()
    (out / "previews").mkdir()

    text = SUBJECT_TEMPLATE.format(token=token, name=name)
    results, rows, previews, labels = [], [], [], []
    for src, photo in tqdm(list(zip(files, photos)), desc="masks" if has_masks else "images", disable=len(files) < 2):
        mask, box, score, note = None, None, None, ""
        if user_arrays:
            mask = user_arrays[src]
        elif segmenter is not None:
            r = segmenter(photo, object_prompt)
            if r.mask is None:
                msg = f"{src}: {r.reason}"
                if on_not_found == "error":
                    raise SmraboothError(f"{msg}. Try another --object-prompt, a lower --box-threshold, or "
                                         "remove the image")
                log(f"left out {msg}")
                results.append(SubjectImageResult(src, None, note=r.reason))
                previews.append(overlay(photo, None))
                labels.append(f"LEFT OUT {src.name}")
                continue
            mask, box, score = r.mask, r.detection.box, r.detection.score
        file_name = f"{len(rows) + 1:04d}.png"
        photo.save(out / "images" / file_name)
        if mask is not None:
            from PIL import Image

            Image.fromarray(mask_to_png_array(mask), mode="L").save(out / "masks" / file_name)
        preview = overlay(photo, mask, box)
        preview.save(out / "previews" / file_name)
        previews.append(preview)
        frac = float(mask.mean()) if mask is not None else 1.0
        labels.append(f"{file_name} {src.name}")
        rows.append((file_name, text))
        results.append(SubjectImageResult(src, file_name, frac, score, note))
        log(f"{src} -> images/{file_name}  {photo.width}x{photo.height}"
            + (f"  mask {100 * frac:.1f}% of the image" if mask is not None else "")
            + (f"  box score {score:.2f}" if score is not None else ""))
    if not rows:
        raise SmraboothError(f"no image kept: the detector found no '{object_prompt}' in any of them. Try another "
                             "--object-prompt or a lower --box-threshold")
    write_metadata(out / METADATA, rows)
    contact_sheet(previews, labels).save(out / "contact_sheet.png")
    return results, rows, text


def prepare_subject(
    images,
    name: str,
    out: str | os.PathLike,
    object_prompt: str | None = None,
    segmenter=None,
    masks_dir: str | os.PathLike | None = None,
    on_not_found: str = "skip",
    max_side: int | None = 1024,
    token: str = "V*",
    overwrite: bool = False,
    log=None,
    adopt_unmarked: bool = False,
) -> list[SubjectImageResult]:
    """Build a subject folder from photos. Masks come from `masks_dir` (the user's own, matched by
    file stem), else from `segmenter(image, object_prompt) -> SegmentResult` (see segment.py), else
    there are none (the trainer then uses the whole image).

    on_not_found: "skip" leaves an image whose subject is not found out (and says so), "error" stops.
    `overwrite` replaces a prepared set in `out` (never one holding the photos or masks: check_out_folder).
    """
    from tqdm import tqdm

    log = log or tqdm.write  # prints without breaking the progress bar
    name = name.strip()
    if not name:
        raise SmraboothError("--name is empty: pass the subject's class name, e.g. --name dog")
    if on_not_found not in ("skip", "error"):
        raise SmraboothError(f"on_not_found must be 'skip' or 'error', not {on_not_found!r}")
    object_prompt = object_prompt or f"a {name}"
    files = expand_inputs(images)
    inputs = {"image": files, "--masks": masks_dir}
    check_out_folder(out, overwrite, COMMAND, inputs, adopt_unmarked=adopt_unmarked)
    user_masks = match_user_masks(files, masks_dir) if masks_dir is not None else None
    photos = [load_photo(p, max_side) for p in files]  # read all first: a bad file fails before writing
    user_arrays = {src: user_mask(user_masks[src], src, photo) for src, photo in zip(files, photos)} \
        if user_masks is not None else {}  # every mask checked before anything is written
    out = open_out_folder(out, overwrite, COMMAND, inputs, adopt_unmarked=adopt_unmarked)
    try:
        results, rows, text = _write_set(out, files, photos, user_arrays, segmenter, object_prompt, on_not_found,
                                         token, name, log)
    except BaseException:
        run_folder.discard(out)  # a replaced set stays as it was
        raise
    out = close_out_folder(out, COMMAND)
    log(f"wrote {len(rows)} of {len(files)} images to {out} (text: '{text}'); check {out / 'contact_sheet.png'}")
    return results
