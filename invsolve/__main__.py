"""``python -m invsolve`` (and ``torchrun -m invsolve study ...``): the command line."""

import sys

from invsolve.cli import main

sys.exit(main())
