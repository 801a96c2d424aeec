"""Readers of user files: text, JSON, YAML, CSV, images and safetensors, each turning a malformed file into one
`SmraboothError` line that names the file and what is wrong with it (never a traceback, never a silent guess).

Every reader of user data in smrabooth goes through these: a JSON list where a mapping is expected, a CSV row
with more fields than its header, a YAML alias bomb, a 16-bit PNG, a 30000 x 30000 image or a safetensors file
cut short are refused (or converted exactly) here, at the door.
"""

from __future__ import annotations

import csv
import io
import json
import os
import reprlib
from pathlib import Path

from .errors import SmraboothError
from .logs import get_logger

log = get_logger(__name__)

# The largest image smrabooth decodes: Pillow's own refusal threshold, about 179 megapixels (a 30000 x 30000
# PNG would take 2.7 GB as RGB).
MAX_IMAGE_PIXELS = 2 * 89_478_485
MAX_NESTING = 64  # levels of JSON / YAML nesting accepted in a settings, answers or metadata file
MAX_YAML_NODES = 100_000  # scalars, lists and mappings of one YAML file, aliases counted each time they are used

_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict, _short.maxlevel = 60, 60, 6, 6, 3


def short_repr(value) -> str:
    """repr() that stays short whatever it is given (a 10^6-element list, an alias bomb): for error lines."""
    return _short.repr(value)


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(e).__name__)


# ---------------------------------------------------------------- text
def decode_text(data: bytes, path, warn: bool = True) -> str:
    """UTF-8 (a byte-order mark is dropped: spreadsheet exports add one), or UTF-16 with its byte-order mark
    (Excel's "Unicode text"); a file that is neither is read as Latin-1 (Windows exports), with a warning."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if warn:
            log.warning(f"{path} is not UTF-8 (byte {data[e.start]:#04x} at offset {e.start}); read as Latin-1: "
                        f"save it as UTF-8 if characters look wrong")
        return data.decode("latin-1")


def read_text(path, what: str = "file") -> str:
    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"{what} {path} does not exist" if what else f"{path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SmraboothError(f"cannot read {path} ({_first_line(e)})") from None
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SmraboothError(f"{path} is not a text file (it holds binary data)")
    return decode_text(data, path)


# ---------------------------------------------------------------- JSON
def _depth(value, limit: int = MAX_NESTING) -> int:
    """Nesting depth of parsed JSON/YAML, iteratively (a recursive walk would itself overflow the stack)."""
    deepest, stack = 0, [(value, 1)]
    seen = set()
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list, tuple)):
            if id(v) in seen:  # a YAML alias: counted where it was first seen
                continue
            seen.add(id(v))
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def parse_json(text: str, source, expect: type | tuple | None = None, what: str = ""):
    """JSON text -> value; `expect` (dict, list) is the type the top level must have."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise SmraboothError(f"{source}: nested more than {MAX_NESTING} levels deep; not a file smrabooth "
                             "writes or reads") from None
    except ValueError as e:  # JSONDecodeError, and the int-string limit of huge numbers
        raise SmraboothError(f"{source} is not valid JSON ({_first_line(e)})") from None
    if _depth(value) > MAX_NESTING:
        raise SmraboothError(f"{source}: nested more than {MAX_NESTING} levels deep; not a file smrabooth writes or "
                             "reads")
    if expect is not None and not isinstance(value, expect):
        kinds = expect if isinstance(expect, tuple) else (expect,)
        names = " or ".join({dict: "a JSON object {...}", list: "a JSON list [...]"}.get(k, k.__name__) for k in kinds)
        raise SmraboothError(f"{source} holds {_json_kind(value)}, but {what or 'it'} must be {names}")
    return value


def _json_kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")


def read_json(path, expect: type | tuple | None = dict, what: str = "") -> object:
    """A JSON file, its top level of type `expect`; any problem is one line naming the file."""
    return parse_json(read_text(path, ""), path, expect, what)


# ---------------------------------------------------------------- YAML
def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys, keys that are not text, deep nesting and alias bombs."""

        depth = 0

        def compose_node(self, parent, index):
            self.depth += 1
            if self.depth > MAX_NESTING:
                mark = self.peek_event().start_mark
                raise yaml.constructor.ConstructorError(None, None, f"nested more than {MAX_NESTING} levels deep",
                                                        mark)
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                self.flatten_mapping(node)
                seen = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=True)
                    if not isinstance(key, str):
                        raise yaml.constructor.ConstructorError(None, None, f"key {short_repr(key)} is not a name "
                                                                "(setting names are text)", key_node.start_mark)
                    if key in seen:
                        raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                                key_node.start_mark)
                    seen.add(key)
            return super().construct_mapping(node, deep)

    return Loader


def _expanded_size(node, limit: int) -> int:
    """How many nodes a composed YAML document holds once every alias is expanded (an alias bomb holds 10^9 in a
    few lines); counted bottom-up over the shared nodes, stopping past `limit`."""
    import yaml

    sizes: dict[int, int] = {}
    stack = [(node, False)]
    while stack:
        n, done = stack.pop()
        if id(n) in sizes:
            continue
        children = []
        if isinstance(n, yaml.SequenceNode):
            children = n.value
        elif isinstance(n, yaml.MappingNode):
            children = [x for pair in n.value for x in pair]
        if not done:
            stack.append((n, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        sizes[id(n)] = min(limit + 1, 1 + sum(sizes.get(id(c), 1) for c in children))
    return sizes[id(node)]


def parse_yaml(text: str, source):
    """YAML text -> value, with SafeLoader's types; duplicate or non-text keys, more than MAX_NESTING levels and
    alias bombs are refused in one line."""
    import yaml

    loader = None
    try:
        loader = _yaml_loader()(text)  # the reader refuses control characters here already
        loader.name = str(source)
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise SmraboothError(f"{source} holds more than {MAX_YAML_NODES} values once its aliases (&name / *name) "
                                 "are expanded; not a settings file")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        what = " ".join(filter(None, [e.context, e.problem])) or _first_line(e)
        raise SmraboothError(f"{source} is not valid YAML ({where.strip()}: {what})" if where else
                             f"{source} is not valid YAML ({what})") from None
    except yaml.YAMLError as e:
        raise SmraboothError(f"{source} is not valid YAML ({_first_line(e)})") from None
    except RecursionError:
        raise SmraboothError(f"{source}: nested too deeply to be a settings file") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml_file(path):
    return parse_yaml(read_text(path, ""), path)


# ---------------------------------------------------------------- CSV
def read_csv(path, what: str = "CSV file") -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line number, {column: value})]) of a CSV file with a header row: a BOM is dropped, Latin-1 is
    read with a warning, names and values are stripped, blank lines skipped; a row with more fields than the header
    (an unquoted comma), a header naming a column twice or a column name holding a line break is an error naming
    the line."""
    text = read_text(path, what)
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows = []
    try:
        for record in reader:
            if not any(c.strip() for c in record):
                continue  # a blank line
            if header is None:
                header = [c.strip() for c in record]
                broken = next((c for c in header if "\n" in c or "\r" in c), None)
                if broken is not None:
                    raise SmraboothError(f"{path}: its header (line {reader.line_num}) names a column {short_repr(broken)} "
                                         "that holds a line break (a quote left open?)")
                dup = sorted({c for c in header if header.count(c) > 1 and c})
                if dup:
                    raise SmraboothError(f"{path}: its header names the column {dup[0]!r} twice")
                continue
            if len(record) > len(header):
                raise SmraboothError(f"{path} line {reader.line_num} has {len(record)} fields but the header has "
                                     f"{len(header)}: put text holding commas in double quotes (\"a dog, running\")")
            values = [c.strip() for c in record] + [""] * (len(header) - len(record))
            rows.append((reader.line_num, dict(zip(header, values))))
    except csv.Error as e:
        raise SmraboothError(f"{path} is not a readable CSV file (line {reader.line_num}: {_first_line(e)})") from None
    return header or [], rows


# ---------------------------------------------------------------- images
def open_image(path, what: str = "image"):
    """An image file decoded whole, as PIL gives it (any mode): too large, truncated or not an image is one line."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"{what} {path} does not exist")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise SmraboothError(f"{path} is {im.width}x{im.height} pixels, more than smrabooth reads "
                                     f"({MAX_IMAGE_PIXELS // 10**6} megapixels): shrink it first")
            if im.width < 1 or im.height < 1:
                raise SmraboothError(f"{path} is an empty {im.width}x{im.height} image")
            im.load()
            return im.copy()
    except SmraboothError:
        raise
    except Image.DecompressionBombError:
        raise SmraboothError(f"{path} has more pixels than smrabooth reads ({MAX_IMAGE_PIXELS // 10**6} megapixels): "
                             "shrink it first") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise SmraboothError(f"{path} is not a readable {what} ({_first_line(e)})") from None


def to_8bit(im):
    """An image of any PIL mode as 8-bit RGB, RGBA or L, values scaled rather than clipped: a 16-bit PNG
    (mode I;16 or I, 0..65535) keeps its picture instead of turning white; palette images keep their colours."""
    import numpy as np
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8), mode="L")
    if im.mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8), mode="L")
    if im.mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("1", "LA", "La", "PA"):
        return im.convert("L" if im.mode == "1" else "LA")
    return im


def read_image_rgb(path, what: str = "image"):
    """An image file as 8-bit RGB (16-bit and palette images converted exactly; transparency over black)."""
    im = to_8bit(open_image(path, what))
    if im.mode in ("RGBA", "LA"):
        from PIL import Image

        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return im.convert("RGB")


def read_image_gray(path, what: str = "mask"):
    """An image file as 8-bit grey (16-bit images scaled, palette images by their colours' brightness)."""
    im = to_8bit(open_image(path, what))
    if im.mode in ("RGBA", "LA"):  # a transparent cutout: the visible part is the subject
        alpha = im.getchannel("A")
        grey = im.convert("L")
        if alpha.getextrema()[0] < 255:
            return alpha
        return grey
    return im.convert("L")


# ---------------------------------------------------------------- safetensors
def read_safetensors(path, what: str = "safetensors file", device: str = "cpu"):
    """(tensors, metadata) of a safetensors file; a file cut short, of another format or with metadata that is
    not text is one line."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"{what} {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise SmraboothError(f"{path} is not a readable {what} ({_first_line(e)})") from None
    return tensors, metadata


def metadata_json(metadata: dict, key: str, path, expect: type = dict):
    """The JSON value stored under `key` in a safetensors file's metadata ({} when absent), of type `expect`."""
    raw = metadata.get(key)
    if raw is None:
        return expect()
    return parse_json(raw, f"{path}: metadata entry {key!r}", expect, f"the {key!r} entry")


def is_inside(path, folder) -> bool:
    """Whether `path` is `folder` or lies under it, after resolving links and '..'."""
    p, f = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return p == f or f in p.parents
