"""Reading and writing slices and masks: round trips and every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from gliomaseg.data.io import read_image, read_image_any, read_mask, write_image, write_mask


def _rgb(h: int = 6, w: int = 5) -> np.ndarray:
    return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)


@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".png"])
def test_image_round_trip_lossless(tmp_path: Path, suffix: str) -> None:
    img = _rgb()
    path = write_image(tmp_path / f"a{suffix}", img)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, img)
    assert [p.name for p in tmp_path.iterdir()] == [f"a{suffix}"]  # no temp file left behind


def test_jpeg_image_reads_as_three_channels(tmp_path: Path) -> None:
    img = np.full((16, 16, 3), 120, np.uint8)
    out = read_image(write_image(tmp_path / "a.jpg", img))
    assert out.shape == (16, 16, 3)
    assert abs(int(out.mean()) - 120) <= 2  # lossy, but flat colour survives


def test_write_refuses_existing_file_unless_overwrite(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", _rgb())
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_image(path, _rgb())
    write_image(path, np.zeros((6, 5, 3), np.uint8), overwrite=True)
    assert read_image(path).max() == 0


def test_rgba_with_opaque_alpha_is_dropped(tmp_path: Path) -> None:
    rgba = np.dstack([_rgb(), np.full((6, 5), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), _rgb())


def test_rgba_with_transparency_is_rejected(tmp_path: Path) -> None:
    alpha = np.full((6, 5), 255, np.uint8)
    alpha[0, 0] = 10
    Image.fromarray(np.dstack([_rgb(), alpha]), "RGBA").save(tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"a\.png.*alpha"):
        read_image(tmp_path / "a.png")


def _uint16(path: Path) -> None:
    Image.fromarray(np.full((6, 5), 1000, np.uint16)).save(path)


def _rgb16(path: Path) -> None:
    # Pillow opens both as 8-bit RGB and drops the low byte unless the reader checks the stored depth.
    rgb = np.full((6, 5, 3), 1000, np.uint16)
    if path.suffix == ".png":
        cv2.imwrite(str(path), rgb)
    else:
        tifffile.imwrite(path, rgb, photometric="rgb")


def _grey(path: Path) -> None:
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(path)


def _two_channel(path: Path) -> None:
    tifffile.imwrite(path, np.zeros((6, 5, 2), np.uint8), photometric="minisblack", planarconfig="contig")


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not an image")


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("u16.png", _uint16, r"u16\.png.*expected H x W x 3 uint8"),
        ("rgb16.tif", _rgb16, r"rgb16\.tif: 16-bit samples \(dtype uint16.*Convert it to 8 bits"),
        ("rgb16.png", _rgb16, r"rgb16\.png: 16-bit samples \(dtype uint16.*Convert it to 8 bits"),
        ("grey.png", _grey, r"grey\.png: got shape 6 x 5 .*expected H x W x 3 uint8"),
        ("two.tif", _two_channel, r"two\.tif.*expected H x W x 3 uint8"),
        ("junk.png", _garbage, r"junk\.png: unreadable"),
    ],
)
def test_bad_images_raise_naming_file(tmp_path: Path, name: str, make, expected: str) -> None:
    make(tmp_path / name)
    with pytest.raises(ValueError, match=expected):
        read_image(tmp_path / name)
    if name.startswith("rgb16"):  # the prediction reader must refuse them too
        with pytest.raises(ValueError, match=expected):
            read_image_any(tmp_path / name)


def test_truncated_tiff_is_detected(tmp_path: Path) -> None:
    path = write_image(tmp_path / "slice_1.tif", np.full((64, 64, 3), 7, np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"slice_1\.tif: unreadable or truncated"):
        read_image(path)


@pytest.mark.parametrize(
    ("path", "expected"),
    [("missing.png", "file not found"), ("a.bmp", "unsupported file type '.bmp'")],
)
def test_missing_or_unsupported_file(tmp_path: Path, path: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        read_image(tmp_path / path)


def test_read_image_any_accepts_grey_and_rgb(tmp_path: Path) -> None:
    _grey(tmp_path / "g.png")
    assert read_image_any(tmp_path / "g.png").shape == (6, 5, 1)
    assert read_image_any(write_image(tmp_path / "c.tif", _rgb())).shape == (6, 5, 3)
    _two_channel(tmp_path / "two.tif")
    with pytest.raises(ValueError, match=r"two\.tif"):
        read_image_any(tmp_path / "two.tif")


@pytest.mark.parametrize(
    ("values", "expected_ones"),
    [
        ([0, 1, 1, 0], 2),
        ([0, 255, 255, 255], 3),
        ([0, 0, 0, 0], 0),
        ([255, 255, 255, 255], 4),
        ([1, 1, 1, 1], 4),
    ],
)
def test_read_mask_accepts_binary_values(tmp_path: Path, values: list[int], expected_ones: int) -> None:
    arr = np.array(values, np.uint8).reshape(2, 2)
    Image.fromarray(arr).save(tmp_path / "m.tif")
    out = read_mask(tmp_path / "m.tif")
    assert out.dtype == np.uint8 and out.shape == (2, 2)
    assert set(np.unique(out).tolist()) <= {0, 1}
    assert int(out.sum()) == expected_ones


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 128, 255, 255], r"\{0, 128, 255\}"),
        ([0, 1, 255, 0], r"\{0, 1, 255\}"),
        ([2, 2, 0, 0], r"\{0, 2\}"),
    ],
)
def test_read_mask_rejects_other_values(tmp_path: Path, values: list[int], expected: str) -> None:
    Image.fromarray(np.array(values, np.uint8).reshape(2, 2)).save(tmp_path / "m.png")
    with pytest.raises(ValueError, match=r"m\.png: mask values " + expected):
        read_mask(tmp_path / "m.png")


def test_three_channel_mask_identical_ok_differing_rejected(tmp_path: Path) -> None:
    m = np.array([[0, 255], [255, 0]], np.uint8)
    Image.fromarray(np.dstack([m, m, m])).save(tmp_path / "same.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "same.png"), m // 255)
    other = m.copy()
    other[0, 0] = 255
    Image.fromarray(np.dstack([m, other, m])).save(tmp_path / "diff.png")
    with pytest.raises(ValueError, match=r"diff\.png: mask has 3 channels that differ"):
        read_mask(tmp_path / "diff.png")


@pytest.mark.parametrize("mask", [np.array([[0, 1], [1, 1]]), np.array([[0, 255], [255, 255]], np.uint8)])
def test_write_mask_stores_0_255_and_reads_back_0_1(tmp_path: Path, mask: np.ndarray) -> None:
    path = write_mask(tmp_path / "m.tif", mask.astype(bool) if mask.max() == 1 else mask)
    raw = np.asarray(Image.open(path))
    assert raw.dtype == np.uint8 and set(np.unique(raw).tolist()) == {0, 255}
    np.testing.assert_array_equal(read_mask(path), [[0, 1], [1, 1]])


@pytest.mark.parametrize(
    ("name", "mask", "expected"),
    [
        ("m.png", np.array([[0, 3]], np.uint8), "not in"),
        ("m.jpg", np.array([[0, 1]], np.uint8), "JPEG is lossy"),
        ("m.png", np.zeros((2, 2, 3), np.uint8), "expected an H x W mask"),
    ],
)
def test_write_mask_rejects_bad_input(tmp_path: Path, name: str, mask: np.ndarray, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        write_mask(tmp_path / name, mask)
    assert not any(tmp_path.iterdir())


def test_write_image_rejects_wrong_dtype(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="expected uint8, got float32"):
        write_image(tmp_path / "a.png", np.zeros((2, 2, 3), np.float32))
