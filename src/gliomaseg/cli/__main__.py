"""``python -m gliomaseg.cli`` runs the ``gliomaseg`` command."""

from __future__ import annotations

import sys

from gliomaseg.cli import main

sys.exit(main())
