"""The HTML report: embedded figures, the GIF budget, escaping, sortable tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gliomaseg.evaluation.figures import plot_dice_distribution, save_gif
from gliomaseg.evaluation.html import write_report


def test_report_embeds_figures_and_respects_the_gif_budget(tmp_path):
    png = plot_dice_distribution(tmp_path / "figures" / "d.png", [0.5, 0.7])
    images = np.zeros((2, 16, 16, 3), np.uint8)
    masks = np.zeros((2, 16, 16), bool)
    gifs = [save_gif(tmp_path / "figures" / f"g{i}.gif", images, masks, masks) for i in range(2)]
    summary = {
        "split": {"name": "test", "fold": 0},
        "warnings": ["split mismatch: <b>x</b>"],
        "volume": {"metrics": {"dice": {"n": 2, "mean": 0.6, "median": 0.6, "std": 0.14, "ci_low": 0.5}}},
        "empty_cases": {"empty_slices": 3},
    }
    per_patient = pd.DataFrame({"patient_id": ["A", "B"], "dice": [0.5, np.nan], "n_slices": [2, 2]})
    budget = gifs[0].stat().st_size  # room for exactly one
    path = write_report(
        tmp_path / "report.html",
        summary,
        per_patient,
        figures=[("dice", png)],
        gifs=[("A", gifs[0]), ("B", gifs[1])],
        max_gif_bytes=budget,
    )
    html = path.read_text()
    assert html.count("data:image/png;base64,") == 1
    assert html.count("data:image/gif;base64,") == 1
    assert "src='figures/g1.gif'" in html  # over budget: linked, not embedded
    assert "&lt;b&gt;x&lt;/b&gt;" in html  # text is escaped
    assert '<td data-v="0.5">0.500</td>' in html and "<td>–</td>" in html
    assert 'class="sortable"' in html
