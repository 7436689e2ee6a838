"""`python -m ganime` (also what `torchrun -m ganime` runs)."""

import sys

from ganime.cli import main

sys.exit(main())
