#!/usr/bin/env python
"""Pretrain the SMRA-Sprites models stage by stage (docs/sprites-models.md).

    python scripts/train_sprites.py vae --out runs/sprites --minutes 9      # repeat with --resume
    python scripts/train_sprites.py dit --out runs/sprites --minutes 9
    python scripts/train_sprites.py dinov2 --out runs/sprites --minutes 9
    python scripts/train_sprites.py searaft --out runs/sprites --minutes 9
    python scripts/train_sprites.py assemble --out runs/sprites             # -> runs/sprites/bundle
"""

import sys

from smrabooth_sprites.pretrain.cli import main

if __name__ == "__main__":  # the guard matters: data workers may be started with spawn/forkserver
    sys.exit(main())
