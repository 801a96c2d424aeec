"""smrabooth: customized video generation with subject and motion LoRAs on Wan2.1 (SMRABooth, CVPR 2026).

Modules, one concern each:
  models/    Wan backbone loading (real or tiny)
  lora/      LoRA files, key formats, targets, sparse injection
  sampling   generation with per-step LoRA scales
  video      reading and writing videos
  config     settings dataclasses <-> YAML
  cli/       the `smrabooth` command
"""

__version__ = "0.1.0"
