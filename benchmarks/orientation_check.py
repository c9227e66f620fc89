"""Does turning a NIfTI by its affine fix scans stored in another orientation? (issue 24)

Each real patient (never a test patient of ``docs/splits_lgg-dev.json``) is saved as a NIfTI the way
other public datasets store volumes (BraTS-style L-P-S: the first axis runs to the patient's left,
the second to posterior, the third to superior; 1 x 1 x 3 mm), then segmented two ways: as stored
(the header without orientation, as gliomaseg read every NIfTI before) and turned by its affine to
the model's frame. Per-patient Dice against the reference mask, in the file's own grid.

Usage: ``python -m benchmarks.orientation_check KAGGLE_3M_FOLDER [--model lgg-unet] [--out results.json]``
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks.common import (
    model_on_patients_args,
    non_test_patients,
    patient_volume_and_truth,
    report_patients,
    volume_dice,
)
from gliomaseg.inference.orientation import from_model_frame, to_model_frame
from gliomaseg.inference.volume import Volume

#: voxel (i, j, k) of an L-P-S volume -> RAS mm: i to the left (-x), j to posterior (-y), k superior.
LPS = np.diag([-1.0, -1.0, 3.0, 1.0])


def main(argv: list[str] | None = None) -> int:
    args, seg = model_on_patients_args(__doc__.split("\n\n")[0], argv)
    scores: dict[str, list[float]] = {"as-stored": [], "turned": []}
    for patient in non_test_patients(args.data, args.splits):
        image, truth = patient_volume_and_truth(patient)  # S x H x W x 3: rows P, columns L, slices S
        stored = image.transpose(2, 1, 0, 3)  # X = columns (L), Y = rows (P), Z = slices (S)
        ref = truth.transpose(2, 1, 0)
        for name, extra in (("as-stored", {"as_stored": True}), ("turned", {})):
            volume = Volume(stored, LPS, patient, "nifti", True, extra)
            array, frame = to_model_frame(volume)
            scores[name].append(volume_dice(from_model_frame(seg.predict_volume(array), frame), ref))
        print(patient.name, {k: round(v[-1], 3) for k, v in scores.items()}, flush=True)
    summary = {k: {"mean": float(np.mean(v)), "median": float(np.median(v)), "n": len(v)} for k, v in scores.items()}
    report_patients(summary, scores, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
