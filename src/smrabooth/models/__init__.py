"""Backbones: the Wan2.1 pipeline (real or tiny), the SEA-RAFT flow network and, later, the alignment encoders."""

from .searaft import SEARAFT, SEARAFT_M, SEARAFT_TINY, SEARAFTConfig, compute_flow, load_searaft
from .tiny import TinyWanConfig, build_tiny_tokenizer, build_tiny_wan_pipeline
from .wan import WAN_1_3B, WAN_14B, check_wan_model_dir, load_wan_pipeline, parse_dtype

__all__ = [
    "SEARAFT",
    "SEARAFTConfig",
    "SEARAFT_M",
    "SEARAFT_TINY",
    "TinyWanConfig",
    "WAN_1_3B",
    "WAN_14B",
    "build_tiny_tokenizer",
    "build_tiny_wan_pipeline",
    "check_wan_model_dir",
    "compute_flow",
    "load_searaft",
    "load_wan_pipeline",
    "parse_dtype",
]
