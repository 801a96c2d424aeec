"""Tiny random-weight stand-ins for every metric model (tests, demos): same classes and file layout as
the real checkpoints, so the real loading code runs on them."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Byte-level BPE alphabet of GPT-2/CLIP: every byte maps to a printable unicode character.


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tiny_clip_tokenizer(folder) -> None:
    """A CLIP tokenizer with the 256 byte symbols (and their word-final forms) and no merges."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + 256 for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = 512, 513
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tok.save_pretrained(folder)


def _write_processor(folder, cfg: dict) -> None:
    (Path(folder) / "preprocessor_config.json").write_text(json.dumps(cfg, indent=2))


def build_tiny_clip(folder, seed: int = 0, image_size: int = 32, projection_dim: int = 16) -> Path:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=514, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=512, eos_token_id=513,
                         pad_token_id=513),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=8),
        projection_dim=projection_dim)
    folder = Path(folder)
    CLIPModel(cfg).eval().save_pretrained(folder)
    write_tiny_clip_tokenizer(folder)
    _write_processor(folder, {"image_processor_type": "CLIPImageProcessor", "do_resize": True,
                              "size": {"shortest_edge": image_size}, "resample": 3, "do_center_crop": True,
                              "crop_size": {"height": image_size, "width": image_size}, "do_rescale": True,
                              "rescale_factor": 1 / 255, "do_normalize": True,
                              "image_mean": [0.48145466, 0.4578275, 0.40821073],
                              "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True})
    return folder


def build_tiny_dinov2(folder, seed: int = 0) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=32,
                       patch_size=8)
    folder = Path(folder)
    Dinov2Model(cfg).eval().save_pretrained(folder)
    _write_processor(folder, {"image_processor_type": "BitImageProcessor", "do_resize": True,
                              "size": {"shortest_edge": 36}, "resample": 3, "do_center_crop": True,
                              "crop_size": {"height": 32, "width": 32}, "do_rescale": True, "rescale_factor": 1 / 255,
                              "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
                              "image_std": [0.229, 0.224, 0.225], "do_convert_rgb": True})
    return folder


def build_tiny_dino_v1(folder, seed: int = 0) -> Path:
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                    patch_size=8)
    folder = Path(folder)
    ViTModel(cfg, add_pooling_layer=True).eval().save_pretrained(folder)
    _write_processor(folder, {"image_processor_type": "ViTImageProcessor", "do_resize": True,
                              "size": {"height": 32, "width": 32}, "resample": 2, "do_rescale": True,
                              "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
                              "image_std": [0.229, 0.224, 0.225]})
    return folder


def build_tiny_aesthetic_head(path, dim: int = 16, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    head = torch.nn.Linear(dim, 1)
    torch.save(head.state_dict(), path)
    return Path(path)


def build_tiny_metric_models(folder, seed: int = 0) -> dict[str, Path]:
    """All tiny models under one folder; returns the paths to pass as --clip-model, --dino-model, ..."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "clip": build_tiny_clip(folder / "clip", seed),
        "pickscore": build_tiny_clip(folder / "pickscore", seed + 1),
        "aesthetic_clip": build_tiny_clip(folder / "clip-l", seed + 2),
        "aesthetic_head": build_tiny_aesthetic_head(folder / "aesthetic_head.pth", 16, seed + 3),
        "dino": build_tiny_dinov2(folder / "dinov2", seed + 4),
        "dino_v1": build_tiny_dino_v1(folder / "dino-v1", seed + 5),
    }
