"""smrabooth: customized video generation with subject and motion LoRAs on Wan2.1/2.2 (SMRABooth, CVPR 2026).

Modules, one concern each (docs/architecture.md draws the layers):
  backbones/ one module per model family (Wan2.1, Wan2.2, ZeroScope): what the method asks of a model
  train/     the subject and motion trainers
  models/    model loading (real or tiny), the differentiable VAE decode, DINOv2, SEA-RAFT
  lora/      LoRA files, key formats, targets, sparse injection
  sampling   generation with per-step LoRA scales
  video      reading and writing videos
  config     settings dataclasses <-> YAML
  cli/       the `smrabooth` command
"""

__version__ = "0.1.0"
