"""Backbones: the Wan2.1 pipeline (real or tiny) and, later, the alignment encoders."""

from .tiny import TinyWanConfig, build_tiny_tokenizer, build_tiny_wan_pipeline
from .wan import WAN_1_3B, WAN_14B, check_wan_model_dir, load_wan_pipeline, parse_dtype

__all__ = [
    "TinyWanConfig",
    "WAN_1_3B",
    "WAN_14B",
    "build_tiny_tokenizer",
    "build_tiny_wan_pipeline",
    "check_wan_model_dir",
    "load_wan_pipeline",
    "parse_dtype",
]
