"""The page with scans from anywhere: NIfTI in another orientation and zipped DICOM series, volumes in mL.

Through the real handlers (:class:`~gliomaseg.web.handlers.Viewer`) and the real readers; the
numbers on the page must equal ``predict``'s ``cases.csv``.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from tests.inference.dicom_corpus import series_affine, write_series
from tests.inference.seg_check import assert_seg_matches

from gliomaseg.data.phantoms import synthesise_volume
from gliomaseg.inference.predict import predict_inputs
from gliomaseg.inference.segmenter import load_segmenter, model_algorithm
from gliomaseg.web.handlers import VIEW, Viewer
from gliomaseg.web.uploads import holds_dicom

MB = 2**20
SETTINGS = (0.49, 0, False, False, False)  # threshold, min size, largest component, fill holes, TTA


@pytest.fixture(scope="module")
def viewer(unet_model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Viewer:
    return Viewer(load_segmenter(unet_model_file), tmp_path_factory.mktemp("server"), 20 * MB)


def _summary(view: tuple) -> str:
    return view[VIEW.index("summary")]


def _reoriented_nifti(path: Path, storage: str) -> Path:
    """A phantom head, 0.9 x 0.9 x 2.5 mm, stored L-P-S (BraTS-like) or with its slice axis first and flipped."""
    volume, _ = synthesise_volume(np.random.default_rng(7), 10, 64)
    data = np.moveaxis(volume[..., 1], 0, 2)[::-1, ::-1].astype(np.float32) * 2.1
    affine = np.diag([-0.9, -0.9, 2.5, 1.0])
    if storage == "slices-first-flipped":  # the same head in the same world: axes (k, i, j), k reversed
        data, affine = data.transpose(2, 0, 1)[::-1], affine[:, [2, 0, 1, 3]]
        affine[:3, 3] += affine[:3, 0] * (data.shape[0] - 1)
        affine[:3, 0] *= -1
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), path)
    return path


@pytest.mark.parametrize(
    ("storage", "voxel"), [("lps", "0.9 × 0.9 × 2.5"), ("slices-first-flipped", "2.5 × 0.9 × 0.9")]
)
def test_nifti_in_another_orientation_shows_ml_equal_to_predict(
    tmp_path: Path, viewer: Viewer, unet_model_file, storage: str, voxel: str
):
    scan = _reoriented_nifti(tmp_path / "head.nii.gz", storage)
    view = viewer.new_scan(None, 1, *SETTINGS, [str(scan)], None)
    text = _summary(view)
    table = predict_inputs(unet_model_file, [scan], tmp_path / "cli", postprocess={"threshold": 0.49})
    shown = re.search(r'id="tumour-total"><span class="gs-value">([\d,.]+)</span> mL \(([\d,]+) voxels\)', text)
    assert shown, text
    assert float(shown.group(1).replace(",", "")) == pytest.approx(table.loc[0, "tumour_ml"], abs=0.005)
    assert int(shown.group(2).replace(",", "")) == table.loc[0, "tumour_voxels"] > 0
    assert re.search(rf'id="components">{table.loc[0, "components"]}\b', text)
    assert f"{voxel} mm from the NIfTI header" in text


def _algorithm(seg: hd.seg.Segmentation) -> tuple[str, str]:
    """The SEG's (AlgorithmName, AlgorithmVersion)."""
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    return algorithm.AlgorithmName, algorithm.AlgorithmVersion


def _dicom_zip(tmp_path: Path, bare_names: bool) -> Path:
    volume, _ = synthesise_volume(np.random.default_rng(8), 6, 64)
    flair = volume[..., 1].astype(np.uint16).transpose(2, 1, 0) * 7  # X = columns, Y = rows, Z = slices
    files = write_series(tmp_path / "series", flair, series_affine(spacing=(0.9, 0.9, 3.0)))
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
def test_a_zipped_dicom_series_is_segmented_in_ml(tmp_path: Path, viewer: Viewer, unet_model_file, bare_names: bool):
    archive = _dicom_zip(tmp_path, bare_names)
    view = viewer.new_scan(None, 1, *SETTINGS, [str(archive)], None)
    text = _summary(view)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "unpacked")
    table = predict_inputs(unet_model_file, [tmp_path / "unpacked"], tmp_path / "cli", postprocess={"threshold": 0.49})
    shown = re.search(r'id="tumour-total"><span class="gs-value">([\d,.]+)</span> mL \(([\d,]+) voxels\)', text)
    assert shown and "(dicom)" in text and "0.9 × 0.9 × 3 mm from the DICOM header" in text, text
    assert float(shown.group(1).replace(",", "")) == pytest.approx(table.loc[0, "tumour_ml"], abs=0.005)
    assert int(shown.group(2).replace(",", "")) == table.loc[0, "tumour_voxels"] > 0
    downloads = [Path(p) for p in view[VIEW.index("downloads")]]
    (seg_file,) = [p for p in downloads if p.name.endswith("_seg.dcm")]
    (mask_file,) = [p for p in downloads if p.name.endswith("_mask.nii.gz")]
    image = nib.load(mask_file)
    np.testing.assert_array_equal(np.asarray(image.dataobj), np.asarray(nib.load(table.loc[0, "mask"]).dataobj))
    sources = [pydicom.dcmread(p) for p in sorted((tmp_path / "unpacked").rglob("*")) if p.is_file()]
    seg = assert_seg_matches(seg_file, sources, np.asarray(image.dataobj) > 0, image.affine)
    # the page's SEG names the model as predict's does: the model file's stem and hash
    name, version = _algorithm(seg)
    digest = hashlib.sha256(unet_model_file.read_bytes()).hexdigest()[:12]
    assert name == f"gliomaseg {unet_model_file.stem} (unet)" and version.startswith(f"sha256:{digest}, ")
    assert (name, version) == model_algorithm(viewer.segmenter) == _algorithm(hd.seg.segread(table.loc[0, "seg"]))
