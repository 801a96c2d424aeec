"""Representation-alignment losses: SuRA (subject, `sura.py`) and MoRA (motion, `mora.py`)."""

from .mora import (
    decode_window,
    decoded_frame_count,
    mora_loss,
    one_step_z0,
    reference_flows,
    valid_window_starts,
    window_ref_flows,
    window_source_frames,
)

__all__ = [
    "decode_window",
    "decoded_frame_count",
    "mora_loss",
    "one_step_z0",
    "reference_flows",
    "valid_window_starts",
    "window_ref_flows",
    "window_source_frames",
]
