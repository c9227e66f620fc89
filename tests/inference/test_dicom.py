"""DICOM in: the corpus of issue 24 (written on the fly with pydicom/highdicom from phantoms and real
volumes), series listing and choice, refusals, and predict on a DICOM folder."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from tests.inference.dicom_corpus import (
    PATIENT_ID,
    PATIENT_NAME,
    build_corpus,
    compress_jpeg_lossless,
    phantom,
    rotation,
    write_series,
)
from tests.inference.seg_check import assert_seg_matches

from gliomaseg import __version__
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.dicom import format_series_table, is_dicom, list_series, read_dicom
from gliomaseg.inference.inputs import discover_inputs, read_case
from gliomaseg.inference.orientation import to_model_frame
from gliomaseg.inference.outputs import OutputOptions, write_case
from gliomaseg.inference.predict import predict_inputs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return build_corpus(tmp_path_factory.mktemp("dicom"))


@pytest.mark.parametrize(
    ("case", "atol"),
    [
        ("axial", 0),
        ("shuffled", 0),
        ("reversed", 0),
        ("rescale", 1.25),
        ("enhanced", 0),
        ("localizer", 0),
        ("study", 0),
    ],
)
def test_readable_series_give_the_written_volume(corpus: dict[str, Path], case: str, atol: float):
    flair, _, affine = phantom(0)
    volume = read_dicom(corpus[case])
    assert volume.kind == "dicom" and volume.array.shape == (*flair.shape, 1) and volume.spacing_known
    np.testing.assert_allclose(volume.array[..., 0], flair, atol=atol)  # rescale: within half a stored step
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    assert volume.voxel_ml == pytest.approx(3.75 * 3.75 * 3.5 / 1000)
    extra = volume.extra
    assert len(extra["files"]) == len(extra["frames"]) == flair.shape[2]
    if case == "enhanced":
        assert len(extra["datasets"]) == 1 and sorted(extra["frames"]) == list(range(flair.shape[2]))
    else:  # the source headers in slice order, for a DICOM SEG
        z = [float(np.dot(ds.ImagePositionPatient, [0, 0, 1])) for ds in extra["datasets"]]
        assert z == sorted(z) and all("PixelData" not in ds for ds in extra["datasets"])


def test_oblique_series_keeps_its_tilt_and_is_resliced(corpus: dict[str, Path]):
    flair, _, affine = phantom(0)
    volume = read_dicom(corpus["oblique"])
    np.testing.assert_allclose(volume.array[..., 0], flair)
    np.testing.assert_allclose(volume.affine, rotation(35.0) @ affine, atol=1e-4)
    assert list_series(corpus["oblique"])[0].plane == "oblique"
    assert to_model_frame(volume)[1].resliced


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("localizer_only", r"localizer_only: cannot read 1 'localizer' .*a localizer \(ImageType LOCALIZER\)"),
        ("missing", r"missing slice\(s\): 7 mm between the slices .* where the others are 3.5 mm apart"),
        ("mixed_orientation", r"mixed orientations"),
        ("uneven", r"inconsistent slice spacing"),
    ],
)
def test_broken_series_are_refused_with_the_reason(corpus: dict[str, Path], case: str, message: str):
    with pytest.raises(GliomasegError, match=message):
        read_dicom(corpus[case])


@pytest.mark.parametrize(("slope", "intercept"), [(1.0, 0.0), (2.5, -100.0)])
def test_jpeg_lossless_series_is_decoded_by_gdcm(tmp_path: Path, slope: float, intercept: float):
    """pydicom has no JPEG Lossless decoder here: SimpleITK (GDCM) decodes it, its rescale applied once."""
    import pydicom

    flair, _, affine = phantom(0)
    paths = write_series(tmp_path, flair, affine, slope=slope, intercept=intercept)
    compress_jpeg_lossless(paths)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    volume = read_dicom(tmp_path)
    np.testing.assert_allclose(volume.array[..., 0], flair, atol=slope / 2 + 1e-3)


def test_mixed_image_sizes_are_refused(tmp_path: Path):
    flair, _, affine = phantom(0)
    uids = {"study": "1.2.3.4", "frame": "1.2.3.5", "series": "1.2.3.6"}
    write_series(tmp_path, flair[:, :, :6], affine, uids=uids, seed=1)
    upper = affine.copy()
    upper[:3, 3] = (affine @ [0, 0, 6, 1])[:3]
    write_series(tmp_path, flair[::2, ::2, 6:], upper @ np.diag([2, 2, 1, 1]), uids=uids, suffix=".ima", seed=2)
    with pytest.raises(GliomasegError, match=r"mixed image sizes \(32 x 32, 64 x 64\)"):
        read_dicom(tmp_path)


def test_too_few_slices_is_refused(tmp_path: Path):
    flair, _, affine = phantom(0)
    write_series(tmp_path, flair[:, :, :3], affine, description="AX FLAIR")
    with pytest.raises(GliomasegError, match=r"only 3 slice\(s\)"):
        read_dicom(tmp_path)


def test_study_listing_picks_flair_and_another_series_can_be_chosen(corpus: dict[str, Path], caplog):
    series = list_series(corpus["study"])
    assert [(s.number, s.description, s.flair, s.plane, s.axcodes) for s in series] == [
        (1, "AX T1 SE", False, "axial", "LPS"),
        (2, "t2_tirm_tra_dark-fluid", True, "axial", "LPS"),
    ]
    table = format_series_table(series)
    assert table.splitlines()[0].split()[:3] == ["#", "description", "orientation"] and "64 x 64" in table
    with caplog.at_level(logging.INFO):
        assert read_dicom(corpus["study"]).extra["description"] == "t2_tirm_tra_dark-fluid"
    assert "as FLAIR (--series to choose another)" in caplog.text
    flair, _, _ = phantom(0)
    for choice in ("1", "ax t1 se", series[0].uid):
        t1 = read_dicom(corpus["study"], series=choice)
        np.testing.assert_allclose(t1.array[..., 0], np.clip(1000.0 - flair, 0, None))
    with pytest.raises(GliomasegError, match=r"--series '7' matches no series; give a number or UID: 1 'AX T1 SE'"):
        read_dicom(corpus["study"], series="7")
    with pytest.raises(GliomasegError, match=r"cannot be read: a localizer"):
        read_dicom(corpus["localizer"], series="localizer")


def test_study_without_a_flair_name_asks_for_series(tmp_path: Path):
    flair, _, affine = phantom(0)
    uids = {"study": "1.2.3.4", "frame": "1.2.3.5"}
    write_series(tmp_path / "a", flair, affine, description="AX T1", uids=uids, number=1, seed=1)
    write_series(tmp_path / "b", flair, affine, description="AX T2", uids=uids, number=2, seed=2)
    with pytest.raises(GliomasegError, match=r"no readable series is named FLAIR; choose one with --series"):
        read_dicom(tmp_path)
    assert read_dicom(tmp_path, series="2").extra["description"] == "AX T2"


def test_folder_without_dicom_is_refused(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(GliomasegError, match="no DICOM image found"):
        read_dicom(tmp_path)


def test_predict_on_dicom_writes_the_mask_in_the_series_geometry_without_identifiers(
    corpus: dict[str, Path], model_file, tmp_path: Path, caplog
):
    _, _, affine = phantom(0)
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG):
        table = predict_inputs(
            model_file(bias=10.0),
            [corpus["shuffled"], corpus["study"], corpus["enhanced"]],
            out,
            overlays=False,
            field_of_view=False,  # every voxel of the series, not only the head's window
        )
    assert table["case"].tolist() == ["shuffled", "study", "enhanced"] and set(table["kind"]) == {"dicom"}
    for case in table["case"]:
        image = nib.load(out / f"{case}_mask.nii.gz")
        assert image.shape == (64, 64, 12)
        np.testing.assert_allclose(image.affine, affine, atol=1e-4)
        assert np.asarray(image.dataobj).all()  # the constant net marks every voxel
    assert table.loc[0, "tumour_ml"] == pytest.approx(64 * 64 * 12 * 3.75 * 3.75 * 3.5 / 1000)
    written = " ".join(str(p) for p in out.rglob("*")) + caplog.text + table.to_csv()
    for secret in (PATIENT_NAME, PATIENT_ID, "Phantom", "ACC-SECRET"):
        assert secret not in written


def test_a_seg_is_not_written_without_naming_the_model(corpus: dict[str, Path], tmp_path: Path):
    (case,) = discover_inputs([corpus["axial"]], tmp_path / "out")
    read_case(case)
    assert case.volume is not None
    with pytest.raises(GliomasegError, match="records the model that made it"):
        write_case(case, np.ones(case.volume.shape[:3], bool), options=OutputOptions(overview=False))
    assert not list((tmp_path / "out").rglob("*.*"))  # refused before any file is written


def test_one_enhanced_file_is_a_case(corpus: dict[str, Path], model_file, tmp_path: Path):
    (path,) = sorted(corpus["enhanced"].iterdir())
    table = predict_inputs(model_file(bias=10.0), [path], tmp_path / "out", overlays=False, field_of_view=False)
    assert (table.loc[0, "case"], table.loc[0, "kind"], table.loc[0, "tumour_voxels"]) == (
        "enhanced",
        "dicom",
        64 * 64 * 12,
    )
    assert nib.load(tmp_path / "out" / "enhanced_mask.nii.gz").shape == (64, 64, 12)


def test_predict_series_flag_reaches_the_reader(corpus: dict[str, Path], model_file, tmp_path: Path, caplog):
    with caplog.at_level(logging.INFO):
        predict_inputs(model_file(bias=-10.0), [corpus["study"]], tmp_path / "out", overlays=False, series="AX T1 SE")
    assert "reading series 1 'AX T1 SE'" in caplog.text


@pytest.mark.real
@pytest.mark.parametrize("reverse", [False, True], ids=["inferior-first", "superior-first"])
def test_real_volume_as_dicom_reads_back_as_kaggle_3m_slices(real_patients: Path, tmp_path: Path, reverse: bool):
    """A real lgg-dev volume written as a standard axial series: the model's frame gives kaggle_3m's slices back."""
    from gliomaseg.inference.inputs import read_volume

    patient = sorted(p for p in real_patients.iterdir() if p.is_dir())[0]
    kaggle = read_volume(patient)  # S x H x W x 3 in kaggle_3m's frame
    flair = kaggle[..., 1].transpose(2, 1, 0).astype(np.float32)  # X = columns (L), Y = rows (P), Z = slices (S)
    affine = np.array([[-0.9, 0, 0, 100.0], [0, -0.9, 0, 120.0], [0, 0, 5.0, -60.0], [0, 0, 0, 1]])
    if reverse:  # the same world, stored superior -> inferior
        flip = np.eye(4)
        flip[2, 2], flip[2, 3] = -1, flair.shape[2] - 1
        flair, affine = flair[:, :, ::-1], affine @ flip
    write_series(tmp_path / "series", flair, affine, shuffle=True)
    array, frame = to_model_frame(read_dicom(tmp_path / "series"))
    assert not frame.resliced
    np.testing.assert_array_equal(array[..., 0], kaggle[..., 1])


@pytest.mark.parametrize("case", ["shuffled", "reversed", "oblique", "enhanced"])
def test_predict_on_dicom_writes_a_seg_that_reads_back_to_the_mask(
    corpus: dict[str, Path], model_file, tmp_path: Path, case: str
):
    import pydicom

    model = model_file()  # a real (untrained) U-Net: a mask that differs from slice to slice
    first = predict_inputs(model, [corpus[case]], tmp_path / "p", save_probabilities=True, field_of_view=False)
    probabilities = np.asarray(nib.load(first.loc[0, "probabilities"]).dataobj)
    threshold = float(np.median(probabilities))  # about half of the voxels tumour, whatever the untrained net says
    post = {"threshold": threshold, "min_size": 0, "tta": False}
    table = predict_inputs(model, [corpus[case]], tmp_path / "out", postprocess=post, field_of_view=False)
    image = nib.load(table.loc[0, "mask"])
    mask = np.asarray(image.dataobj) > 0
    assert 0 < mask.sum() < mask.size and len({int(s) for s in mask.sum(axis=(0, 1))}) > 1
    sources = [pydicom.dcmread(p) for p in sorted(corpus[case].rglob("*")) if p.is_file() and is_dicom(p)]
    seg = assert_seg_matches(table.loc[0, "seg"], sources, mask, image.affine)
    # the model that made it, by its file and the file's hash; nothing of the patient
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == f"gliomaseg {model.stem} (unet)"
    version = f"sha256:{hashlib.sha256(model.read_bytes()).hexdigest()[:12]}, gliomaseg {__version__}"
    assert algorithm.AlgorithmVersion == version
    assert seg.ManufacturerModelName == algorithm.AlgorithmName


def test_cli_predict_on_dicom_logs_no_library_chatter(corpus: dict[str, Path], model_file, tmp_path: Path, caplog):
    """highdicom logs every module it copies into a SEG at INFO: the user's log keeps gliomaseg's own lines."""
    from gliomaseg.cli import main

    with caplog.at_level(logging.INFO):
        status = main(["predict", "--model", str(model_file()), str(corpus["shuffled"]), "--out", str(tmp_path / "o")])
    assert status == 0
    assert not [r for r in caplog.records if r.name.startswith("highdicom")]
    assert any("as FLAIR" in r.getMessage() for r in caplog.records)  # the series choice is still said
