"""gliomaseg: lower-grade glioma segmentation in brain MRI with U-Net-family networks."""

from __future__ import annotations

__version__ = "0.1.0"
