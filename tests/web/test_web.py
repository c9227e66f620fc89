"""Unit tests of the web viewer's pure parts: uploads, ground truth, analysis (== predict), rendering, downloads."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from gliomaseg.cli import main
from gliomaseg.data.io import read_mask, write_image, write_mask
from gliomaseg.errors import GliomasegError
from gliomaseg.evaluation.postprocess import PostprocessConfig
from gliomaseg.inference.predict import predict_inputs
from gliomaseg.inference.segmenter import Segmenter, load_segmenter, model_algorithm
from gliomaseg.web.analysis import Analysis
from gliomaseg.web.downloads import write_downloads
from gliomaseg.web.examples import NIFTI_SPACING, Example, make_examples
from gliomaseg.web.render import error_html, summary_html, upscale
from gliomaseg.web.truth import read_truth
from gliomaseg.web.uploads import load_upload

MB = 2**20


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Example]:
    return {e.key: e for e in make_examples(tmp_path_factory.mktemp("examples"), size=64)}


@pytest.fixture(scope="module")
def segmenter(unet_model_file: Path) -> Segmenter:
    return load_segmenter(unet_model_file)


def _slices(folder: Path, name: str, n: int, size: tuple[int, int] = (48, 48)) -> list[Path]:
    rng = np.random.default_rng(0)
    return [
        write_image(folder / f"{name}_{k}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
        for k in range(1, n + 1)
    ]


# ------------------------------------------------------------------------------------------ uploads
@pytest.mark.parametrize(
    ("key", "kind", "slices", "truth_inside"),
    [
        ("slice", "slice", 1, False),
        ("flair", "slice", 1, False),
        ("patient", "patient", None, True),  # the kaggle_3m zip carries its masks
        ("nifti", "nifti", 20, False),
    ],
)
def test_examples_load_as_one_scan(tmp_path: Path, examples, key, kind, slices, truth_inside):
    scan = load_upload(examples[key].scan, tmp_path / "work", max_bytes=10 * MB)
    assert scan.case.kind == kind
    assert scan.volume.dtype == np.uint8 and scan.volume.shape[1:] == (64, 64, 3)
    assert slices is None or scan.volume.shape[0] == slices
    assert (scan.truth is not None) == truth_inside
    if truth_inside:
        assert scan.truth.shape == scan.volume.shape[:3] and scan.truth.any()
    assert scan.spacing == (pytest.approx(NIFTI_SPACING) if kind == "nifti" else None)


def test_several_numbered_slices_are_one_volume_in_order(tmp_path: Path):
    files = _slices(tmp_path, "P1", 11)
    scan = load_upload(list(reversed(files)), tmp_path / "work", max_bytes=MB)
    assert scan.case.kind == "volume"
    assert scan.slice_labels == [f"P1_{k}" for k in range(1, 12)]  # 1, 2, ..., 10, 11: numeric order
    assert np.array_equal(scan.volume[9], np.asarray(Image.open(files[9])))


def _text_file(folder: Path, name: str) -> list[Path]:
    (folder / name).write_text("not an image")
    return [folder / name]


def _two_loose_slices(folder: Path) -> list[Path]:
    return [write_image(folder / n, np.zeros((40, 40), np.uint8)) for n in ("a.png", "b.png")]


def _sizes_differ(folder: Path) -> list[Path]:
    return [*_slices(folder, "P2", 2), write_image(folder / "P2_3.png", np.zeros((64, 64, 3), np.uint8))]


def _two_patients_zip(folder: Path) -> list[Path]:
    with zipfile.ZipFile(folder / "two.zip", "w") as archive:
        for name in ("A", "B"):
            for path in _slices(folder / name, name, 2):
                archive.write(path, f"{name}/{path.name}")
    return [folder / "two.zip"]


def _see_through_png(folder: Path) -> list[Path]:
    Image.fromarray(np.zeros((32, 32, 4), np.uint8)).save(folder / "rgba.png")  # 4 channels, transparent
    return [folder / "rgba.png"]


def _corrupt_zip(folder: Path) -> list[Path]:
    (folder / "scan.zip").write_bytes(b"PK\x03\x04 truncated")
    return [folder / "scan.zip"]


def _truncated_nifti(folder: Path) -> list[Path]:
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 4), np.float32), np.eye(4)), folder / "v.nii")
    data = (folder / "v.nii").read_bytes()
    (folder / "v.nii").write_bytes(data[: len(data) // 2])
    return [folder / "v.nii"]


@pytest.mark.parametrize(
    ("make", "max_bytes", "match"),
    [
        (lambda d: _text_file(d, "notes.png"), MB, r"notes\.png: unreadable or truncated image"),
        (lambda d: _text_file(d, "notes.txt"), MB, r"notes\.txt: unsupported file type '\.txt'"),
        (lambda d: _slices(d, "P", 1), 100, r"over this server's limit of 0\.0 MB.*--max-upload-mb"),
        (_two_loose_slices, MB, r"2 separate scans \(a, b\).*<name>_<n>"),
        (_sizes_differ, MB, r"P2_3\.png: size 64 x 64 differs"),
        (_two_patients_zip, MB, r"2 separate scans"),
        (_corrupt_zip, MB, r"scan\.zip: not a readable zip file"),
        (_truncated_nifti, MB, r"v\.nii: unreadable or truncated NIfTI"),
        (lambda d: [], MB, r"no file uploaded"),
        (_see_through_png, MB, r"rgba\.png: has a transparency \(alpha\) channel"),
    ],
)
def test_bad_uploads_raise_clear_errors(tmp_path: Path, make, max_bytes, match):
    with pytest.raises(GliomasegError, match=match):
        load_upload(make(tmp_path), tmp_path / "work", max_bytes=max_bytes)


def test_zip_bomb_is_refused_before_unpacking(tmp_path: Path):
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("P/P_1.png", b"\0" * (5 * MB))
    assert (tmp_path / "bomb.zip").stat().st_size < MB
    with pytest.raises(GliomasegError, match=r"bomb\.zip: unpacks to 5\.0 MB, over 4 x"):
        load_upload([tmp_path / "bomb.zip"], tmp_path / "work", max_bytes=MB)
    assert not (tmp_path / "work" / "scan" / "P").exists()


# ------------------------------------------------------------------------------------------ ground truth
def test_truth_matched_by_name_or_number_order(tmp_path: Path):
    files = _slices(tmp_path, "P1", 3)
    scan = load_upload(files, tmp_path / "work", max_bytes=MB)
    masks = [np.zeros((48, 48), np.uint8) for _ in range(3)]
    for k, m in enumerate(masks):
        m[: k + 1] = 1
    named = [write_mask(tmp_path / "t" / f"P1_{k + 1}_mask.tif", m) for k, m in enumerate(masks)]
    numbered = [write_mask(tmp_path / "u" / f"seg_{k + 1}.png", m) for k, m in enumerate(masks)]
    for paths in (named[::-1], numbered[::-1]):
        truth = read_truth(paths, scan, max_bytes=MB)
        assert truth.reshape(3, -1).sum(axis=1).tolist() == [48, 96, 144]


def test_nifti_truth_aligned_with_the_scan(tmp_path: Path, examples):
    scan = load_upload(examples["nifti"].scan, tmp_path / "work", max_bytes=10 * MB)
    truth = read_truth(examples["nifti"].truth, scan, max_bytes=10 * MB)
    stored = np.asanyarray(nib.load(examples["nifti"].truth[0]).dataobj)
    assert truth.shape == scan.volume.shape[:3]
    assert np.array_equal(truth, np.moveaxis(stored, 2, 0) > 0)


@pytest.mark.parametrize(
    ("key", "make_truth", "match"),
    [
        (
            "slice",
            lambda d: [write_mask(d / "m.png", np.zeros((32, 32), np.uint8))],
            r"m\.png: ground truth is 32 x 32",
        ),
        ("slice", lambda d: [write_image(d / "m.png", np.full((64, 64), 7, np.uint8))], r"m\.png: mask values \{7\}"),
        (
            "slice",
            lambda d: [write_mask(d / f"m{k}.png", np.zeros((64, 64), np.uint8)) for k in range(2)],
            r"2 mask image\(s\) for 1 slice",
        ),
        ("nifti", lambda d: [write_mask(d / "m.png", np.zeros((64, 64), np.uint8))], r"one NIfTI mask"),
        (
            "nifti",
            lambda d: [
                nib.save(nib.Nifti1Image(np.zeros((64, 64, 3), np.uint8), np.eye(4)), d / "m.nii") or d / "m.nii"
            ],
            r"m\.nii: ground truth shape \(64, 64, 3\) does not match the scan's \(64, 64, 20\)",
        ),
    ],
)
def test_truth_that_does_not_match_is_refused(tmp_path: Path, examples, key, make_truth, match):
    scan = load_upload(examples[key].scan, tmp_path / "work", max_bytes=10 * MB)
    with pytest.raises(GliomasegError, match=match):
        read_truth(make_truth(tmp_path), scan, max_bytes=10 * MB)


# ------------------------------------------------------------------------------------------ analysis == predict
@pytest.mark.parametrize(("key", "threshold"), [("slice", 0.5), ("flair", 0.499), ("nifti", 0.499)])
def test_page_masks_and_areas_equal_predict(tmp_path: Path, examples, segmenter, unet_model_file, key, threshold):
    scan = load_upload(examples[key].scan, tmp_path / "work", max_bytes=10 * MB)
    result = Analysis(scan).update(segmenter, PostprocessConfig(threshold=threshold))
    table = predict_inputs(unet_model_file, examples[key].scan, tmp_path / "cli", postprocess={"threshold": threshold})
    cli = table.iloc[0]
    for column in ("slices", "slices_with_tumour", "tumour_voxels", "components", "volume_unit"):
        assert result.row[column] == cli[column]
    for column in ("tumour_ml", "largest_component_ml", "quality_score"):
        value = result.quality[column] if column.startswith("quality") else result.row[column]
        assert np.isclose(value, cli[column], equal_nan=True)
    assert result.quality["quality_flag"] == cli["quality_flag"]
    assert (result.quality["quality_flag"] == "") == (key != "nifti")  # a single slice is not scored
    if key == "nifti":
        stored = np.asanyarray(nib.load(cli["mask"]).dataobj)
        assert np.array_equal(result.mask, np.moveaxis(stored, 2, 0) > 0)
    else:
        assert np.array_equal(result.mask[0], read_mask(cli["mask"]) > 0)
    assert result.mask.any()  # the random net's probabilities straddle 0.5, so the comparison is not trivial


#: Quality calibrations with and without the flip disagreement (which costs the flipped input's pass).
_WITH_FLIP = {"features": ["disagreement", "log_volume"], "mean": [0.2, 3.0], "scale": [0.1, 1.0]}
_NO_FLIP = {"features": ["log_components", "log_volume"], "mean": [0.7, 3.0], "scale": [0.4, 1.0]}


@pytest.mark.parametrize(
    ("calibration", "passes"),
    [(_NO_FLIP, 1), (_WITH_FLIP, 2)],  # the page's quality costs a second pass only for the disagreement
    ids=["no-flip", "flip"],
)
def test_threshold_reuses_probabilities_and_tta_runs_the_network(
    tmp_path: Path, examples, segmenter, calibration, passes
):
    calls = []
    quality = {**calibration, "coef": [1.0, -1.0], "intercept": 0.0, "threshold": 0.5}
    counting = Segmenter(
        lambda x: calls.append(len(x)) or segmenter.logits_fn(x),
        segmenter.preprocess,
        segmenter.postprocess,
        meta={"quality": quality},
    )
    analysis = Analysis(load_upload(examples["nifti"].scan, tmp_path / "work", max_bytes=10 * MB))
    sizes, scores = [], []
    for settings in (PostprocessConfig(0.5), PostprocessConfig(0.49), PostprocessConfig(0.49, fill_holes=True)):
        result = analysis.update(counting, settings)
        sizes.append(int(result.mask.sum()))
        scores.append(result.quality["quality_score"])
    # one pass over the 20 slices (and the flipped one), threshold and the mask's quality signals applied after
    assert sum(calls) == passes * 20 and sizes[1] > sizes[0]
    assert scores[0] != scores[1] and all(0.0 < q < 1.0 for q in scores)  # the predicted volume is a signal
    analysis.update(counting, PostprocessConfig(0.5, tta=True))
    assert sum(calls) == passes * (20 + 4 * 20)  # flip TTA: four flips of every slice


def test_truth_metrics_and_per_slice_table(tmp_path: Path, examples, segmenter):
    analysis = Analysis(load_upload(examples["patient"].scan, tmp_path / "work", max_bytes=10 * MB))
    result = analysis.update(segmenter, PostprocessConfig(0.49))
    truth, mask = analysis.truth, result.mask
    inter = int((truth & mask).sum())
    assert result.metrics["dice"] == pytest.approx(2 * inter / (truth.sum() + mask.sum()))
    assert result.metrics["iou"] == pytest.approx(inter / (truth | mask).sum())
    table = result.per_slice
    assert list(table.columns) == ["slice", "tumour_px", "truth_px", "dice"]
    assert table["tumour_px"].sum() == mask.sum() and result.best_slice == int(np.argmax(table["tumour_px"]))
    assert table["dice"].isna().tolist() == (table["truth_px"] == 0).tolist()


# ------------------------------------------------------------------------------------------ rendering, downloads
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "slice",
            [
                r"Tumour area</th><td id=\"tumour-total\"><span class=\"gs-value\">[\d,]+</span> pixels",
                "in voxels",
                r"id=\"quality\">not scored \(one slice: the quality flag is calibrated on whole volumes\)",
            ],
        ),
        (
            "nifti",
            [
                r"Tumour volume</th><td id=\"tumour-total\"><span class=\"gs-value\">[\d,.]+</span> mL "
                r"\([\d,]+ voxels\)",
                "0.9 × 0.9 × 3 mm",
                r"Components</th><td id=\"components\">\d+",
                r"Quality</th><td id=\"quality\"><span class=\"gs-value\">[01]\.\d\d</span> "
                r"<span class=\"gs-flag-(ok|check)\">(ok|check)</span>",
            ],
        ),
    ],
)
def test_summary_units(tmp_path: Path, examples, segmenter, key, expected):
    analysis = Analysis(load_upload(examples[key].scan, tmp_path / "work", max_bytes=10 * MB))
    analysis.update(segmenter, PostprocessConfig(0.49))
    text = summary_html(analysis, 0)
    for pattern in expected:
        assert re.search(pattern, text), (pattern, text)
    assert 'id="dice"' not in text


def test_error_html_hides_server_paths_and_escapes():
    tmp = Path("/tmp/gliomaseg-web-abc")
    box = error_html(f"{tmp}/uploads/9f3e/notes <b>.png: unreadable (0/1 or 0/255)", tmp)
    assert "gliomaseg-web-abc" not in box and "9f3e" not in box
    assert "notes &lt;b&gt;.png: unreadable (0/1 or 0/255)" in box and 'role="alert"' in box


@pytest.mark.parametrize(("shape", "factor"), [((64, 64, 3), 6), ((100, 40), 3), ((500, 500, 3), 1)])
def test_upscale_by_integer_factor(shape, factor):
    image = np.arange(np.prod(shape)).reshape(shape)
    big = upscale(image, 384)
    assert big.shape[:2] == (shape[0] * factor, shape[1] * factor)
    assert np.array_equal(big[::factor, ::factor], image)


@pytest.mark.parametrize(
    ("key", "mask_name", "overlay_name"),
    [
        ("slice", "phantom_slice_mask.tif", "phantom_slice_overlay.png"),
        ("flair", "phantom_flair_mask.png", "phantom_flair_overlay.png"),
        ("nifti", "phantom_flair_mask.nii.gz", "phantom_flair_004_overlay.png"),
        ("patient", "TCGA_SA_P001_20100710_masks.zip", "TCGA_SA_P001_20100710_5_overlay.png"),
    ],
)
def test_downloads_in_the_inputs_format(tmp_path: Path, examples, segmenter, key, mask_name, overlay_name):
    analysis = Analysis(load_upload(examples[key].scan, tmp_path / "work", max_bytes=10 * MB))
    result = analysis.update(segmenter, PostprocessConfig(0.49))
    z = 4 if key in ("nifti", "patient") else 0
    mask_file, overlay_file = write_downloads(analysis, z, model_algorithm(segmenter))
    assert (mask_file.name, overlay_file.name) == (mask_name, overlay_name)
    assert np.asarray(Image.open(overlay_file)).shape == (64, 64, 3)
    if key == "patient":
        with zipfile.ZipFile(mask_file) as archive:
            assert len(archive.namelist()) == result.mask.shape[0]
    elif key == "nifti":
        assert np.array_equal(np.moveaxis(np.asanyarray(nib.load(mask_file).dataobj), 2, 0) > 0, result.mask)
        assert nib.load(mask_file).header.get_zooms()[:3] == pytest.approx(NIFTI_SPACING)
    else:
        assert np.array_equal(read_mask(mask_file) > 0, result.mask[0])


def test_cli_serve_refuses_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["serve", "--model", str(tmp_path / "none.pt"), "--port", "7999"]) == 2
    assert "none.pt does not exist and is not a bundled model" in capsys.readouterr().err


def test_cli_serve_refuses_an_unknown_quality_calibration(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = ["serve", "--model", "lgg-unet", "--port", "7999", "--quality-calibration", str(tmp_path / "no.json")]
    assert main(argv) == 2  # before the model is loaded or anything bound
    assert "no.json: no such file; give a JSON file or one of: one-pass, flip" in capsys.readouterr().err
