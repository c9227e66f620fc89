"""Several sequences per case: NIfTI files named by sequence, stacked into the model's channels.

The model's channels are (pre-contrast T1, FLAIR, post-contrast T1), as in kaggle_3m. A case may come
as separate files named ``<case>_<sequence>.nii[.gz]`` (case-insensitive, ``_`` or ``-``):

- ``_flair``, ``_t2flair``: FLAIR (required: without it, or alone, the files stay separate cases);
- ``_t1``: pre-contrast T1;
- ``_t1ce``, ``_t1c``, ``_t1gd``, ``_t1post``: post-contrast T1;
- ``_t2``: not used (the model has no T2 channel; skipped with a note);
- nnU-Net's ``_0000``, ``_0001``, ``_0002``, ``_0003``: FLAIR, pre-contrast, post-contrast, (T2), the
  Medical Segmentation Decathlon brain-tumour order (FLAIR, T1w, T1gd, T2w).

A missing pre- or post-contrast sequence is a copy of FLAIR, as kaggle_3m fills it (and as the model
was trained), so FLAIR alone works. The other sequences are brought onto FLAIR's voxel grid: used as
they are when they share it (same shape and affine), else resampled (linear, by their affines).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from gliomaseg.errors import GliomasegError
from gliomaseg.inference.nifti import nifti_stem, read_nifti_volume
from gliomaseg.inference.orientation import resample
from gliomaseg.inference.volume import Volume

__all__ = ["CHANNELS", "read_sequences", "sequence_role"]

log = logging.getLogger(__name__)

#: The model's channels in order.
CHANNELS: tuple[str, str, str] = ("pre", "flair", "post")
_ROLES = {
    "flair": "flair", "t2flair": "flair", "0000": "flair",
    "t1": "pre", "0001": "pre",
    "t1ce": "post", "t1c": "post", "t1gd": "post", "t1post": "post", "0002": "post",
    "t2": "t2", "0003": "t2",
}  # fmt: skip
_NAME = re.compile(r"^(?P<case>.+?)[_-](?P<sequence>" + "|".join(sorted(_ROLES, key=len, reverse=True)) + r")$", re.I)


def sequence_role(path: Path) -> tuple[str, str] | None:
    """``(case, role)`` of a NIfTI file named by sequence (role ``pre``, ``flair``, ``post`` or ``t2``), else None.

    Example:
        >>> [sequence_role(Path(n)) for n in ("BraTS_001_t1ce.nii.gz", "brain_0000.nii", "x.nii")]
        [('BraTS_001', 'post'), ('brain', 'flair'), None]
    """
    stem = nifti_stem(path)
    match = _NAME.match(stem) if stem else None
    return (match["case"], _ROLES[match["sequence"].lower()]) if match else None


def group_sequences(paths: list[Path]) -> dict[str, dict[str, Path]]:
    """Group NIfTI files of one folder into cases of FLAIR and another sequence: ``{case: {role: file}}``.

    Raises:
        GliomasegError: two files of one case with the same role (e.g. ``_flair`` and ``_0000``).
    """
    groups: dict[str, dict[str, Path]] = {}
    for path in paths:
        named = sequence_role(path)
        if named is None:
            continue
        case, role = named
        if role in groups.setdefault(case, {}):
            raise GliomasegError(
                f"{path} and {groups[case][role]} are both the {role} sequence of case {case!r}; keep one"
            )
        groups[case][role] = path
    # A lone ``x_flair`` file stays the plain NIfTI case ``x_flair``, as it always was.
    return {case: roles for case, roles in groups.items() if "flair" in roles and len(roles) > 1}


def read_sequences(files: dict[str, Path]) -> Volume:
    """Read a case's sequence files into one :class:`Volume` on FLAIR's grid, channels (pre, FLAIR, post).

    Args:
        files: ``{role: file}`` with ``flair`` (roles as :func:`sequence_role`; ``t2`` is skipped).

    Returns:
        ``X x Y x Z x 3`` float32 on FLAIR's grid and affine (missing sequences: copies of FLAIR); ``extra``
        as FLAIR's (:func:`~gliomaseg.inference.nifti.read_nifti_volume`) plus ``sequences``: the files used.

    Raises:
        GliomasegError: no FLAIR, a file that is not one-channel, or any error of reading a file.
    """
    if "flair" not in files:
        raise GliomasegError(f"sequences {sorted(files)} of {next(iter(files.values()))}: a FLAIR file is needed")
    flair = read_nifti_volume(files["flair"])
    channels = {}
    for role in ("pre", "flair", "post"):
        if role not in files:
            continue
        volume = flair if role == "flair" else read_nifti_volume(files[role])
        if volume.array.shape[3] != 1:
            raise GliomasegError(f"{files[role]}: {volume.array.shape[3]} channels; a sequence file holds one")
        data = volume.array[..., 0]
        same = volume.shape == flair.shape and np.allclose(volume.affine, flair.affine, atol=1e-3)
        if not same:
            if volume.extra.get("as_stored") or flair.extra.get("as_stored"):
                raise GliomasegError(
                    f"{files[role]}: its grid differs from {files['flair']} and a header gives no orientation to "
                    "resample by; save the sequences on FLAIR's grid"
                )
            log.info("%s: resampled onto the grid of %s", files[role], files["flair"])
            data = resample(data, volume.affine, flair.shape, flair.affine, order=1)
        channels[role] = data.astype(np.float32, copy=False)
    if "t2" in files:
        log.info("%s: not used (the model has no T2 channel)", files["t2"])
    stacked = np.stack([channels.get(role, channels["flair"]) for role in CHANNELS], axis=-1)
    extra = {**flair.extra, "sequences": {role: files[role] for role in channels}}
    return Volume(stacked, flair.affine, flair.source, "nifti", flair.spacing_known, extra)
