"""Downloading the Kaggle "LGG MRI Segmentation" dataset with kagglehub.

Without Kaggle credentials this fails before touching the network and says how to get the data by
hand, so a user without an account (or offline) knows exactly what to do.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from gliomaseg.errors import GliomasegError, OutputExistsError

__all__ = ["DownloadError", "KAGGLE_DATASET", "KAGGLE_URL", "download_dataset", "find_kaggle_credentials"]

logger = logging.getLogger(__name__)

KAGGLE_DATASET = "mateuszbuda/lgg-mri-segmentation"
KAGGLE_URL = f"https://www.kaggle.com/datasets/{KAGGLE_DATASET}"


class DownloadError(GliomasegError, RuntimeError):
    """The dataset could not be downloaded (no credentials, no kagglehub, or an unexpected archive)."""


_MANUAL = (
    f"To download by hand: open {KAGGLE_URL}, click Download, unzip the archive and point "
    "`gliomaseg index` at its kaggle_3m folder (the one holding TCGA_* patient folders and data.csv)."
)


def find_kaggle_credentials() -> str | None:
    """Say where kagglehub would find Kaggle credentials, without reading secrets or the network.

    Mirrors kagglehub 1.0.x: ``KAGGLE_API_TOKEN`` (a token or a path to one), ``~/.kaggle/access_token``
    (or ``.txt``), ``KAGGLE_USERNAME`` + ``KAGGLE_KEY``, ``$KAGGLE_CONFIG_DIR/kaggle.json`` or
    ``~/.kaggle/kaggle.json``, and a Kaggle notebook's own token.

    Returns:
        A short description of the source found, or None.
    """
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") and os.environ.get("KAGGLE_API_V1_TOKEN"):
        return "Kaggle notebook token"
    kaggle_dir = Path(os.path.expanduser("~/.kaggle"))
    for name in ("access_token", "access_token.txt"):
        if (kaggle_dir / name).is_file():
            return str(kaggle_dir / name)
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME and KAGGLE_KEY"
    config_dir = Path(os.environ.get("KAGGLE_CONFIG_DIR") or kaggle_dir)
    if (config_dir / "kaggle.json").is_file():
        return str(config_dir / "kaggle.json")
    return None


def _find_kaggle_3m(downloaded: Path) -> Path:
    # The archive holds kaggle_3m/ and a duplicate lgg-mri-segmentation/kaggle_3m/: take the shallowest.
    candidates = sorted(
        (p for p in [downloaded, *downloaded.rglob("kaggle_3m")] if p.is_dir() and p.name == "kaggle_3m"),
        key=lambda p: (len(p.parts), str(p)),
    )
    if not candidates:
        raise DownloadError(
            f"the Kaggle download in {downloaded} has no kaggle_3m folder; the dataset layout may have "
            f"changed. {_MANUAL}"
        )
    return candidates[0]


def download_dataset(dest: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Download ``kaggle_3m`` from Kaggle and copy it to ``dest``.

    Args:
        dest: target folder for the ``kaggle_3m`` contents (patient folders and ``data.csv``).
        overwrite: replace an existing non-empty ``dest``.

    Returns:
        ``dest`` as a Path, ready for :func:`gliomaseg.data.index.index_dataset`.

    Raises:
        DownloadError: no Kaggle credentials (raised before any network use), kagglehub is not
            installed, or the download failed; the message says how to download by hand.
        GliomasegError: ``dest`` exists, is not empty and ``overwrite`` is False.
    """
    dest = Path(dest).expanduser()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())) and not overwrite:
        raise OutputExistsError(f"{dest} already exists and is not empty; choose another folder or pass --overwrite")
    source = find_kaggle_credentials()
    if source is None:
        raise DownloadError(
            "no Kaggle credentials found: set KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, or put "
            "kaggle.json (from kaggle.com > Settings > API > Create New Token) in ~/.kaggle/. " + _MANUAL
        )
    try:
        import kagglehub
    except ImportError as err:
        raise DownloadError(f"kagglehub is not installed: pip install 'gliomaseg[download]'. {_MANUAL}") from err
    logger.info("downloading %s with kagglehub (credentials from %s)", KAGGLE_DATASET, source)
    try:
        downloaded = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as err:  # kagglehub raises requests/HTTP/its own errors; all mean the same here
        raise DownloadError(
            f"downloading {KAGGLE_DATASET} failed ({type(err).__name__}: {err}); check the network and "
            f"your Kaggle credentials ({source}). {_MANUAL}"
        ) from err
    src = _find_kaggle_3m(downloaded)
    # Copy to a sibling temp folder and rename, so an interrupted copy never looks like a dataset.
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    if dest.exists():
        if dest.is_dir():
            shutil.rmtree(dest)
        else:
            dest.unlink()
    os.replace(tmp, dest)
    logger.info("copied %s to %s", src, dest)
    return dest
