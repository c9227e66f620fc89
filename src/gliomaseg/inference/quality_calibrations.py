"""Which quality calibration scores a model's cases (:mod:`gliomaseg.inference.quality`).

A calibration is a small JSON file (``scripts/calibrate_quality.py`` writes it): the signals it uses,
their logistic coefficients, the flag's threshold and the training volumes' intensity statistics.
A model file may carry its own (``meta["quality"]``); otherwise the ones fitted for the bundled
``lgg-unet`` (package data) are used, by name, or a JSON file the user fitted.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from gliomaseg.errors import GliomasegError

__all__ = ["BUNDLED_CALIBRATIONS", "default_calibration", "quality_calibration"]

#: The calibrations fitted for the bundled ``lgg-unet`` (package data), by the name ``predict
#: --quality-calibration`` takes: ``one-pass`` (the default: no signal costs a second network pass)
#: and ``flip`` (adds the flip disagreement: a second pass per case, a better flag; docs/accuracy.md).
BUNDLED_CALIBRATIONS = {"one-pass": "lgg-unet.quality.json", "flip": "lgg-unet.quality-flip.json"}


@cache
def _bundled(name: str) -> dict[str, Any] | None:
    path = resources.files("gliomaseg.inference").joinpath("weights", BUNDLED_CALIBRATIONS[name])
    return json.loads(path.read_text()) if path.is_file() else None


def default_calibration() -> dict[str, Any] | None:
    """The calibration fitted for the bundled ``lgg-unet`` (package data), None when absent."""
    return _bundled("one-pass")


def quality_calibration(
    meta: dict[str, Any] | None, calibration: dict[str, Any] | str | Path | None = None
) -> dict[str, Any] | None:
    """The calibration that scores a model's cases.

    Args:
        meta: the model's metadata (``Segmenter.meta``); its ``quality`` entry is its own calibration.
        calibration: a calibration dict, a name of :data:`BUNDLED_CALIBRATIONS` or a JSON file
            given instead (None: the model's, else the bundled ``lgg-unet``'s).

    Raises:
        GliomasegError: a calibration file that cannot be read (the message lists the bundled names).
    """
    if isinstance(calibration, str) and calibration in BUNDLED_CALIBRATIONS:
        return _bundled(calibration)
    if isinstance(calibration, str | Path):
        if not Path(calibration).is_file():
            names = ", ".join(BUNDLED_CALIBRATIONS)
            msg = f"quality calibration {calibration}: no such file; give a JSON file or one of: {names}"
            raise GliomasegError(msg)
        try:
            return json.loads(Path(calibration).read_text())
        except (OSError, ValueError) as err:
            msg = f"quality calibration {calibration}: cannot read it ({err}); pass a JSON file"
            raise GliomasegError(msg) from err
    if calibration is not None:
        return calibration
    stored = (meta or {}).get("quality")
    return stored if isinstance(stored, dict) else default_calibration()
