"""`python -m smrabooth.cli ...`: the smrabooth command."""

import sys

from . import main

sys.exit(main())
