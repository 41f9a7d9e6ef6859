"""``python -m robustness``."""

import sys

from .cli import main

sys.exit(main())
