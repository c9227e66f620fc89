"""Fixtures of the web viewer tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def unet_model_file(model_file) -> Path:
    """A real U-Net model file, randomly initialised (seed 0), features 4, trained size 32."""
    return model_file()
