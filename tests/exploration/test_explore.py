"""``gliomaseg explore``: tables that agree with the index, the head region, figures, reports, no overwrite."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from gliomaseg.cli import main
from gliomaseg.data.index import index_dataset
from gliomaseg.errors import OutputExistsError
from gliomaseg.exploration import explore_dataset, head_mask


@pytest.fixture(scope="module")
def explored(tmp_path_factory, phantoms):
    return explore_dataset(phantoms, tmp_path_factory.mktemp("explore") / "out", progress=False)


def test_tables_agree_with_the_index(explored, phantoms):
    table = index_dataset(phantoms).table
    patients = explored.patients.set_index("patient_id")
    per_patient = table.groupby("patient_id")
    pd.testing.assert_series_equal(
        patients["tumour_voxels"], per_patient["tumour_pixels"].sum(), check_names=False, check_dtype=False
    )
    pd.testing.assert_series_equal(patients["slices"], per_patient.size(), check_names=False, check_dtype=False)
    assert (patients["has_pre"] == per_patient["has_pre"].first()).all()
    assert (~patients["has_pre"] | ~patients["has_post"]).any()  # the phantoms include missing sequences
    # The lesion lies inside the head: a share strictly between 0 and 1.
    assert patients["tumour_head_share"].between(0, 1, inclusive="neither").all()
    assert explored.slices["position"].between(0, 1).all()
    assert patients["tumour_position"].between(0, 1).all()
    data_csv = pd.read_csv(explored.out / "data_csv.csv")
    assert "RNASeqCluster" in set(data_csv["column"])
    assert (data_csv["patients"] + data_csv["missing"] == len(patients)).all()


def test_histograms_count_head_pixels_per_site(explored):
    total = sum(int(h[1].sum()) for h in explored.histograms.values())
    assert total == int(explored.slices["head_pixels"].sum())
    assert set(explored.histograms) == set(explored.patients["site"])


def test_head_mask_fills_holes_and_ignores_background_noise():
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 6, size=(2, 40, 40, 3), dtype=np.uint8)  # faint background noise
    volume[:, 10:30, 10:30] = 120  # the head...
    volume[:, 15:20, 15:20] = 0  # ...with a dark hole inside (a ventricle)
    mask = head_mask(volume)
    assert mask.sum() == 2 * 20 * 20
    assert mask[:, 10:30, 10:30].all()


def test_outputs_and_reports(explored):
    out = explored.out
    for name in ("explore.md", "explore.html", "patients.csv", "slices.csv", "data_csv.csv"):
        assert (out / name).is_file()
    assert len(explored.figures) == 8 and all(p.is_file() and p.suffix == ".png" for _, p in explored.figures)
    md = (out / "explore.md").read_text()
    for site in explored.patients["site"].unique():
        assert f"| {site} |" in md
    assert "](figures/examples.png)" in md
    page = (out / "explore.html").read_text()
    assert page.count("data:image/png;base64") == len(explored.figures) and "src='figures" not in page


def test_refuses_to_overwrite(explored, phantoms):
    with pytest.raises(OutputExistsError):
        explore_dataset(phantoms, explored.out, progress=False)


def test_cli_replaces_only_with_overwrite(explored, tmp_path, phantoms, capsys):
    out = tmp_path / "ex"
    shutil.copytree(explored.out, out)
    (out / "figures" / "stale.png").write_bytes(b"")
    assert main(["explore", str(phantoms), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["explore", str(phantoms), "--out", str(out), "--overwrite"]) == 0
    assert "6 patients" in capsys.readouterr().out
    assert not (out / "figures" / "stale.png").exists()  # an earlier exploration's figures do not linger
