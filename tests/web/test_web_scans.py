"""The page with scans from anywhere: NIfTI in another orientation and zipped DICOM series, volumes in mL.

Through the real handlers (:class:`~gliomaseg.web.handlers.Viewer`) and the real readers; the
numbers on the page must equal ``predict``'s ``cases.csv``.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from tests.inference.dicom_builder import mr_series, save_series

from gliomaseg.data.phantoms import synthesise_volume
from gliomaseg.inference.predict import predict_inputs
from gliomaseg.inference.segmenter import load_segmenter
from gliomaseg.web.handlers import VIEW, Viewer
from gliomaseg.web.uploads import holds_dicom

MB = 2**20
SETTINGS = (0.49, 0, False, False, False)  # threshold, min size, largest component, fill holes, TTA


@pytest.fixture(scope="module")
def viewer(unet_model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Viewer:
    return Viewer(load_segmenter(unet_model_file), tmp_path_factory.mktemp("server"), 20 * MB)


def _summary(view: tuple) -> str:
    return view[VIEW.index("summary")]


def _lps_nifti(path: Path) -> Path:
    """A phantom head stored L-P-S (BraTS-like), 0.9 x 0.9 x 2.5 mm."""
    volume, _ = synthesise_volume(np.random.default_rng(7), 10, 64)
    data = np.moveaxis(volume[..., 1], 0, 2)[::-1, ::-1].astype(np.float32) * 2.1
    nib.save(nib.Nifti1Image(data, np.diag([-0.9, -0.9, 2.5, 1.0])), path)
    return path


def test_nifti_in_another_orientation_shows_ml_equal_to_predict(tmp_path: Path, viewer: Viewer, unet_model_file):
    scan = _lps_nifti(tmp_path / "head.nii.gz")
    view = viewer.new_scan(None, 1, *SETTINGS, [str(scan)], None)
    text = _summary(view)
    table = predict_inputs(unet_model_file, [scan], tmp_path / "cli", postprocess={"threshold": 0.49})
    shown = re.search(r'id="tumour-total"><span class="gs-value">([\d,.]+)</span> mL \(([\d,]+) voxels\)', text)
    assert shown, text
    assert float(shown.group(1).replace(",", "")) == pytest.approx(table.loc[0, "tumour_ml"], abs=0.005)
    assert int(shown.group(2).replace(",", "")) == table.loc[0, "tumour_voxels"] > 0
    assert re.search(rf'id="components">{table.loc[0, "components"]}\b', text)
    assert "0.9 × 0.9 × 2.5 mm from the NIfTI header" in text


def _dicom_zip(tmp_path: Path, bare_names: bool) -> Path:
    volume, _ = synthesise_volume(np.random.default_rng(8), 6, 64)
    datasets = mr_series((volume[..., 1].astype(np.uint16) * 7), spacing=(0.9, 0.9, 3.0))
    files = save_series(datasets, tmp_path / "series")
    target = tmp_path / "series.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for n, path in enumerate(files):
            archive.write(path, arcname=f"study/IM{n:04d}" if bare_names else f"study/{path.name}")
    return target


@pytest.mark.parametrize("bare_names", [False, True], ids=["dcm-suffix", "no-suffix"])
def test_a_zip_of_dicom_files_is_recognised(tmp_path: Path, bare_names: bool):
    archive = _dicom_zip(tmp_path, bare_names)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "unpacked")
    assert holds_dicom(tmp_path / "unpacked")
    assert holds_dicom(tmp_path / "series")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes").write_bytes(b"\0" * 200)
    assert not holds_dicom(tmp_path / "other")


@pytest.mark.parametrize("bare_names", [False, True], ids=["dcm-suffix", "no-suffix"])
def test_a_zipped_dicom_series_is_segmented_in_ml(tmp_path: Path, viewer: Viewer, bare_names: bool):
    pytest.importorskip("gliomaseg.inference.dicom", reason="the DICOM series reader (issue 24, input side)")
    view = viewer.new_scan(None, 1, *SETTINGS, [str(_dicom_zip(tmp_path, bare_names))], None)
    text = _summary(view)
    assert "(dicom)" in text and " mL (" in text and "from the DICOM header" in text, text
    downloads = [Path(p).name for p in view[VIEW.index("downloads")]]
    assert any(name.endswith("_seg.dcm") for name in downloads)
