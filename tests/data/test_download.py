"""Kaggle download: only the offline paths (no credentials, bad targets); there is no network here."""

from __future__ import annotations

from pathlib import Path

import pytest

from gliomaseg.data import download
from gliomaseg.data.download import KAGGLE_URL, download_dataset, find_kaggle_credentials

_KAGGLE_VARS = (
    "KAGGLE_USERNAME",
    "KAGGLE_KEY",
    "KAGGLE_API_TOKEN",
    "KAGGLE_CONFIG_DIR",
    "KAGGLE_KERNEL_RUN_TYPE",
    "KAGGLE_API_V1_TOKEN",
)


@pytest.fixture
def no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An environment with no Kaggle credentials: empty HOME, no KAGGLE_* variables."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in _KAGGLE_VARS:
        monkeypatch.delenv(var, raising=False)
    return home


def test_no_credentials_fails_fast_with_instructions(
    no_credentials: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kagglehub

    def no_network(*args, **kwargs):
        raise AssertionError("dataset_download must not be called without credentials")

    monkeypatch.setattr(kagglehub, "dataset_download", no_network)
    with pytest.raises(RuntimeError) as err:
        download_dataset(tmp_path / "data")
    msg = str(err.value)
    for needle in (
        "KAGGLE_USERNAME",
        "KAGGLE_KEY",
        "KAGGLE_API_TOKEN",
        "kaggle.json",
        KAGGLE_URL,
        "kaggle_3m",
    ):
        assert needle in msg
    assert "gliomaseg index" in msg
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("env", "files", "expected"),
    [
        ({}, [], None),
        ({"KAGGLE_USERNAME": "u"}, [], None),  # a key is needed too
        ({"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}, [], "KAGGLE_USERNAME and KAGGLE_KEY"),
        ({"KAGGLE_API_TOKEN": "t"}, [], "KAGGLE_API_TOKEN"),
        ({}, [".kaggle/kaggle.json"], "kaggle.json"),
        ({}, [".kaggle/access_token"], "access_token"),
        ({"KAGGLE_CONFIG_DIR": "{home}/cfg"}, ["cfg/kaggle.json"], "cfg/kaggle.json"),
    ],
)
def test_credential_sources(
    no_credentials: Path, monkeypatch: pytest.MonkeyPatch, env: dict, files: list[str], expected: str | None
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(home=no_credentials))
    for rel in files:
        (no_credentials / rel).parent.mkdir(parents=True, exist_ok=True)
        (no_credentials / rel).write_text("{}")
    found = find_kaggle_credentials()
    if expected is None:
        assert found is None
    else:
        assert found is not None and found.endswith(expected)


def test_non_empty_destination_needs_overwrite(no_credentials: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "x").write_text("mine")
    with pytest.raises(ValueError, match=r"data already exists and is not empty.*--overwrite"):
        download_dataset(dest)
    assert (dest / "x").read_text() == "mine"


def test_finds_shallowest_kaggle_3m(tmp_path: Path) -> None:
    # The Kaggle archive layout: kaggle_3m/ plus a duplicate lgg-mri-segmentation/kaggle_3m/.
    (tmp_path / "lgg-mri-segmentation" / "kaggle_3m").mkdir(parents=True)
    (tmp_path / "kaggle_3m").mkdir()
    assert download._find_kaggle_3m(tmp_path) == tmp_path / "kaggle_3m"
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="no kaggle_3m folder"):
        download._find_kaggle_3m((tmp_path / "empty").resolve())
