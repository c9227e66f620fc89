"""Tests of ``predict``: every input kind, output formats and geometry, cases.csv, no-overwrite, errors."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gliomaseg.cli import main
from gliomaseg.inference.inputs import discover_inputs
from gliomaseg.inference.outputs import CASES_COLUMNS, overlay
from gliomaseg.inference.predict import predict_inputs
from gliomaseg.inference.quality import QUALITY_COLUMNS


@pytest.fixture(scope="module")
def models(model_file) -> dict[str, Path]:
    """Real (untrained) U-Nets; "all" and "none" are constant: every pixel tumour, or none."""
    return {"real": model_file(), "all": model_file(bias=10.0), "none": model_file(bias=-10.0)}


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask_values(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


# ------------------------------------------------------------------------------------------ slices
@pytest.mark.parametrize(
    ("name", "channels", "mask_name"),
    [
        ("a.tif", 3, "a_mask.tif"),
        ("b.tiff", 3, "b_mask.tiff"),
        ("c.png", 1, "c_mask.png"),
        ("d.jpg", 3, "d_mask.png"),  # JPEG masks would not stay binary
        ("e.jpeg", 1, "e_mask.png"),
    ],
)
def test_single_slice_formats_and_geometry(tmp_path: Path, models: dict[str, Path], name, channels, mask_name):
    image = _rgb(40, 56)
    Image.fromarray(image if channels == 3 else image[..., 1]).save(tmp_path / name)
    out = tmp_path / "out"
    table = predict_inputs(models["real"], tmp_path / name, out)
    mask = _mask_values(out / mask_name)
    assert mask.shape == (40, 56) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 255}
    assert (out / f"{Path(name).stem}_overlay.png").is_file()
    assert list(table.columns) == [*CASES_COLUMNS, *QUALITY_COLUMNS]
    assert table.loc[0, "kind"] == "slice" and table.loc[0, "slices"] == 1
    assert table.loc[0, "tumour_voxels"] == int((mask > 0).sum())
    assert np.isnan(table.loc[0, "tumour_ml"]) and table.loc[0, "volume_unit"] == "voxels"


@pytest.mark.parametrize(("model", "expected"), [("all", 1.0), ("none", 0.0)])
def test_areas_and_overlay_hand_computed(tmp_path: Path, models: dict[str, Path], model: str, expected: float):
    Image.fromarray(_rgb(30, 20)).save(tmp_path / "s.png")
    out = tmp_path / "out"
    table = predict_inputs(models[model], [tmp_path / "s.png"], out)
    assert table.loc[0, "tumour_voxels"] == expected * 30 * 20
    assert table.loc[0, "slices_with_tumour"] == expected
    np.testing.assert_array_equal(_mask_values(out / "s_mask.png"), np.full((30, 20), 255 * expected, np.uint8))
    red = np.all(_mask_values(out / "s_overlay.png") == [255, 0, 0], axis=-1)
    # An all-tumour mask's outline is the image border: 2 * (30 + 20) - 4 pixels.
    assert red.sum() == expected * (2 * (30 + 20) - 4)
    written = pd.read_csv(out / "cases.csv")
    assert written["tumour_voxels"].tolist() == [expected * 600]


def test_overlay_outline():
    flair = np.full((6, 6), 7, np.uint8)
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    rgb = overlay(flair, mask)
    red = np.all(rgb == [255, 0, 0], axis=-1)
    assert red.sum() == 12  # the 4 x 4 square's ring; its 2 x 2 inside stays grey
    assert not red[2:4, 2:4].any() and (rgb[~red] == 7).all()


# ------------------------------------------------------------------------------------------ folders
def test_folder_of_numbered_slices_is_one_volume_in_natural_order(tmp_path: Path, models: dict[str, Path]):
    folder = tmp_path / "scans"
    folder.mkdir()
    for n in (10, 2, 1):
        Image.fromarray(_rgb(32, 32, seed=n)).save(folder / f"vol_{n}.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "vol_1_mask.png")  # ignored
    Image.fromarray(_rgb(24, 24)).save(folder / "loose.tif")  # its own case
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    cases = discover_inputs([folder], out)
    assert [(c.name, c.kind) for c in cases] == [("loose", "slice"), ("vol", "volume")]
    assert [p.name for p in cases[1].files] == ["vol_1.png", "vol_2.png", "vol_10.png"]
    table = predict_inputs(models["all"], [folder], out)
    assert table["slices"].tolist() == [1, 3]
    assert table["tumour_voxels"].tolist() == [24 * 24, 3 * 32 * 32]
    for n in (1, 2, 10):
        assert _mask_values(out / "scans" / f"vol_{n}_mask.png").min() == 255
        assert not (out / "scans" / f"vol_{n}_overlay.png").exists()  # a volume's overlays only on request
    assert (out / "scans" / "vol_overview.png").is_file()
    assert (out / "scans" / "loose_mask.tif").is_file() and (out / "scans" / "loose_overlay.png").is_file()
    predict_inputs(models["all"], [folder], out, overlays=True, overwrite=True)
    assert all((out / "scans" / f"vol_{n}_overlay.png").is_file() for n in (1, 2, 10))


def test_kaggle_patient_folder_and_root(tmp_path: Path, models: dict[str, Path], phantoms: Path):
    root = phantoms
    patients = sorted(p for p in root.iterdir() if p.is_dir())
    out = tmp_path / "out"
    table = predict_inputs(models["real"], [patients[0]], out)
    n = len(list(patients[0].glob("*_mask.tif")))
    assert table.loc[0, "kind"] == "patient" and table.loc[0, "slices"] == n
    assert len(list((out / patients[0].name).glob("*_mask.tif"))) == n
    # The whole kaggle_3m folder: one case per patient, outputs mirrored below out/kaggle_3m/.
    whole = predict_inputs(models["real"], [root], tmp_path / "out2")
    assert whole["case"].tolist() == [p.name for p in patients]
    for p in patients:
        got = sorted(f.name for f in (tmp_path / "out2" / "kaggle_3m" / p.name).glob("*_mask.tif"))
        assert got == sorted(f.name for f in p.glob("*_mask.tif"))


# ------------------------------------------------------------------------------------------ NIfTI
@pytest.mark.parametrize("shape", [(40, 48, 5), (40, 48, 5, 3), (40, 48, 5, 1), (40, 48)])
def test_nifti_keeps_geometry(tmp_path: Path, models: dict[str, Path], shape: tuple[int, ...]):
    rng = np.random.default_rng(1)
    data = rng.normal(100.0, 30.0, shape).astype(np.float32)
    affine = np.array([[0.0, -0.9, 0.0, 10.0], [1.1, 0.0, 0.0, -20.0], [0.0, 0.0, 3.0, 5.0], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    nib.save(img, tmp_path / "brain.nii.gz")
    out = tmp_path / "out"
    table = predict_inputs(models["all"], [tmp_path / "brain.nii.gz"], out)
    result = nib.load(out / "brain_mask.nii.gz")
    mask = np.asarray(result.dataobj)
    assert mask.shape == shape[:3] and mask.dtype == np.uint8
    assert mask.min() == mask.max() == 1
    np.testing.assert_allclose(result.affine, affine, atol=1e-6)
    assert int(result.header["qform_code"]) == 1 and int(result.header["sform_code"]) == 2
    assert result.header.get_xyzt_units()[0] == "mm"
    slices = shape[2] if len(shape) > 2 else 1
    voxel_ml = 0.9 * 1.1 * 3.0 / 1000  # a 2D slice's thickness comes from the affine too
    row = table.iloc[0]
    assert (row["kind"], row["slices"], row["slices_with_tumour"]) == ("nifti", slices, slices)
    assert row["tumour_voxels"] == 40 * 48 * slices and row["components"] == 1
    assert row["tumour_ml"] == pytest.approx(40 * 48 * slices * voxel_ml, rel=1e-5)
    assert not (out / "brain_overlay").exists()
    overview = Image.open(out / "brain_overview.png")  # a palette PNG: grey levels, the red outline, yellow labels
    assert overview.mode == "P" and row["overview"] == str(out / "brain_overview.png")
    assert np.asarray(overview.convert("RGB")).shape[2] == 3
    predict_inputs(models["all"], [tmp_path / "brain.nii.gz"], out, overlays=True, overwrite=True)
    overlays = sorted((out / "brain_overlay").glob("*.png"))
    # Overlays show the slices as the model saw them, turned to its frame: rows along -X (posterior), columns
    # along Y (left).
    assert len(overlays) == slices and np.asarray(Image.open(overlays[0])).shape == (40, 48, 3)


# ------------------------------------------------------------------------------------------ safety
def test_no_overwrite_checks_every_target_first(tmp_path: Path, models: dict[str, Path]):
    for name in ("a.png", "b.png"):
        Image.fromarray(_rgb(32, 32)).save(tmp_path / name)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_mask.png").write_bytes(b"keep me")
    with pytest.raises(ValueError, match="--overwrite"):
        predict_inputs(models["real"], [tmp_path / "a.png", tmp_path / "b.png"], out)
    assert sorted(p.name for p in out.iterdir()) == ["b_mask.png"]  # nothing written for a.png either
    assert (out / "b_mask.png").read_bytes() == b"keep me"
    predict_inputs(models["none"], [tmp_path / "a.png", tmp_path / "b.png"], out, overwrite=True)
    assert _mask_values(out / "b_mask.png").max() == 0


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("scan.bmp", b"BM....", "unsupported file type"),
        ("notes.txt", b"hello", "supported inputs"),
        ("bad.tif", b"II*\x00garbage", "unreadable"),
        ("bad.png", b"\x89PNG\r\n\x1a\nnope", "unreadable"),
        ("bad.nii.gz", b"not gzip at all", "unreadable"),
        ("bad.nii", b"\x00" * 10, "unreadable"),
    ],
)
def test_bad_inputs_name_the_file(tmp_path: Path, models: dict[str, Path], name, content, match):
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "good.png")
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "out"
    # Alone, a bad input is an error and nothing is written.
    with pytest.raises(ValueError, match=match) as err:
        predict_inputs(models["real"], [tmp_path / name], out)
    assert name in str(err.value)
    assert not out.exists() or not any(out.iterdir())
    if match != "unreadable":  # not a supported input at all: the command line is wrong, nothing runs
        with pytest.raises(ValueError, match=match):
            predict_inputs(models["real"], [tmp_path / "good.png", tmp_path / name], out)
        return
    # Among good inputs, an unreadable one is listed in failed.csv and the others are predicted.
    table = predict_inputs(models["real"], [tmp_path / "good.png", tmp_path / name], out)
    assert table["case"].tolist() == ["good"] and (out / "good_mask.png").is_file()
    failed = pd.read_csv(out / "failed.csv")
    assert failed["case"].tolist() == [name.split(".")[0]] and failed["error"].str.contains(match).all()
    assert failed.equals(table.attrs["failed"])


def test_mismatched_slice_sizes_in_a_volume(tmp_path: Path, models: dict[str, Path]):
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "v_1.png")
    Image.fromarray(_rgb(32, 40)).save(tmp_path / "v_2.png")
    with pytest.raises(ValueError, match="v_2.png"):
        predict_inputs(models["real"], [tmp_path], tmp_path / "out")


def test_postprocess_overrides(tmp_path: Path, models: dict[str, Path]):
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "s.png")
    # min_size larger than the whole 32 x 32 volume removes its one component.
    table = predict_inputs(models["all"], [tmp_path / "s.png"], tmp_path / "o1", postprocess={"min_size": 2000})
    assert table.loc[0, "tumour_voxels"] == 0
    with pytest.raises(ValueError, match="unknown postprocess"):
        predict_inputs(models["all"], [tmp_path / "s.png"], tmp_path / "o2", postprocess={"thresh": 0.3})


# ------------------------------------------------------------------------------------------ CLI
def test_cli_predict(tmp_path: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str]):
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "s.tif")
    args = ["predict", "--model", str(models["all"]), str(tmp_path / "s.tif"), "--out", str(tmp_path / "out")]
    assert main([*args, "--threshold", "0.4", "--no-tta"]) == 0
    assert "1 case(s)" in capsys.readouterr().out
    assert _mask_values(tmp_path / "out" / "s_mask.tif").min() == 255
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--no-overlays", "--no-graph-fusion"]) == 0
    assert _mask_values(tmp_path / "out" / "s_mask.tif").min() == 255
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert "cases.csv and components.csv in" in printed and "overlay" not in printed, printed


def test_existing_outputs_are_refused_before_any_input_is_read(tmp_path: Path, models: dict[str, Path], capsys):
    # the input is unreadable: had it been read first (as it was), its error would come instead
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "s.tif").write_bytes(b"not a tiff")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "s_mask.tif").write_bytes(b"the user's earlier result")
    argv = ["predict", "--model", str(models["all"]), str(tmp_path / "in" / "s.tif"), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "exist already" in err and "--overwrite" in err and "overwrite=True" not in err, err
    assert (tmp_path / "out" / "s_mask.tif").read_bytes() == b"the user's earlier result"


# --------------------------------------------------------------------------- stopped runs, bad folders
def _three_cases(root: Path) -> list[Path]:
    """Two slice folders (a, b; 2 slices each) and a NIfTI volume."""
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for n in (1, 2):
            Image.fromarray(_rgb(32, 32, seed=n)).save(root / name / f"{name}_{n}.png")
    nib.save(nib.Nifti1Image(np.ones((40, 36, 3), np.float32), np.eye(4)), root / "v.nii.gz")
    return [root / "a", root / "b", root / "v.nii.gz"]


def test_resume_skips_the_cases_already_written(tmp_path: Path, models: dict[str, Path]):
    inputs, out = _three_cases(tmp_path / "in"), tmp_path / "out"
    first = predict_inputs(models["all"], inputs, out)
    # A stopped run: case b lost its last mask (never written), cases.csv was not written yet.
    (out / "b" / "b_2_mask.png").unlink()
    (out / "cases.csv").unlink()
    with pytest.raises(ValueError, match=r"exist already .*pass --resume"):
        predict_inputs(models["none"], inputs, out)
    # Resumed with a model that finds nothing: only case b is predicted again.
    table = predict_inputs(models["none"], inputs, out, resume=True)
    assert table["case"].tolist() == ["a", "b", "v"]
    assert table["tumour_voxels"].tolist() == [first.loc[0, "tumour_voxels"], 0, first.loc[2, "tumour_voxels"]]
    measured = list(CASES_COLUMNS)  # rows read back from the masks on disk
    assert table.drop(index=1)[measured].equals(first.drop(index=1)[measured])
    # the probabilities behind a skipped case's quality are gone: blank, the predicted case scored
    assert table["quality_flag"].tolist()[::2] == ["", ""] and table.loc[1, "quality_flag"] in ("ok", "check")
    assert table["quality_score"].isna().tolist() == [True, False, True]
    assert pd.read_csv(out / "cases.csv")["tumour_voxels"].tolist() == table["tumour_voxels"].tolist()
    components = pd.read_csv(out / "components.csv")
    assert components["case"].tolist() == ["a", "v"]  # b is empty now: no component
    assert _mask_values(out / "b" / "b_1_mask.png").max() == 0  # b's old partial output was replaced


def test_an_unwritable_output_folder_is_found_before_the_model_runs(tmp_path: Path, read_only_folder: Path):
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "s.png")
    (tmp_path / "broken.pt").write_bytes(b"not a model")  # loading it would fail: it must not be reached
    with pytest.raises(
        ValueError,
        match=r"cannot write to the output folder .*\((read-only file system|permission denied)\).*another --out",
    ):
        predict_inputs(tmp_path / "broken.pt", [tmp_path / "s.png"], read_only_folder / "out")
