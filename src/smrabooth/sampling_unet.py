"""Moved to backbones/zeroscope.py (the ZeroScope backbone); these names stay importable from here for now."""

from .backbones.zeroscope import UnetGenerateConfig, generate_unet, schedule_for, t_point_for_timesteps

__all__ = ["UnetGenerateConfig", "generate_unet", "schedule_for", "t_point_for_timesteps"]
