"""`python -m smrabooth ...` (and so `torchrun -m smrabooth`, `accelerate launch -m smrabooth`) is `smrabooth ...`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
