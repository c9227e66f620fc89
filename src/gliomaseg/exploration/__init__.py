"""Dataset exploration (``gliomaseg explore``): what a ``kaggle_3m`` folder holds, as figures and reports.

- :mod:`~gliomaseg.exploration.scan`: the head region, per-slice and per-patient tables, the
  result type (what every other module here imports);
- :mod:`~gliomaseg.exploration.figures`: the figures;
- :mod:`~gliomaseg.exploration.report`: ``explore.md`` and ``explore.html``;
- :mod:`~gliomaseg.exploration.explore`: ``explore_dataset``, which runs them in order.

Public names load on first use (see :mod:`gliomaseg._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gliomaseg._lazy import lazy_exports

_EXPORTS = {
    "CHANNELS": "gliomaseg.exploration.scan",
    "ExploreResult": "gliomaseg.exploration.scan",
    "head_mask": "gliomaseg.exploration.scan",
    "patient_table": "gliomaseg.exploration.scan",
    "read_volume_rows": "gliomaseg.exploration.scan",
    "scan_volumes": "gliomaseg.exploration.scan",
    "explore_dataset": "gliomaseg.exploration.explore",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from gliomaseg.exploration.explore import (
        explore_dataset,
    )
    from gliomaseg.exploration.scan import (
        CHANNELS,
        ExploreResult,
        head_mask,
        patient_table,
        read_volume_rows,
        scan_volumes,
    )
