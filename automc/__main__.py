"""``python -m automc`` runs the CLI."""

import sys

from automc.cli import main

sys.exit(main())
