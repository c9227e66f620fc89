"""Does bringing the head to kaggle_3m's field of view help on shifted volumes? (issue 24)

Each real patient (kaggle_3m layout, never a test patient of ``docs/splits_lgg-dev.json``) is placed
into larger canvases, as a scan with a wider field of view or an off-centre head would be: the
original 256 x 256, centred in 384 x 384, shifted into a corner of 384 x 384, and shifted in
512 x 512. Each is segmented by a model with and without the field-of-view window
(:meth:`gliomaseg.inference.segmenter.Segmenter.with_field_of_view`, as ``predict`` uses it for NIfTI and
DICOM), the mask taken back to the canvas, and
per-patient Dice against the reference mask placed the same way.

Usage: ``python -m benchmarks.field_of_view KAGGLE_3M_FOLDER [--model lgg-unet] [--out results.json]``
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

#: (name, canvas side, row offset, column offset) of the 256 x 256 slices inside the canvas.
CANVASES = (
    ("original", 256, 0, 0),
    ("centred-384", 384, 64, 64),
    ("corner-384", 384, 0, 128),
    ("corner-512", 512, 240, 16),
)
_PLS = np.array([[0.0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # rows P, columns L, slices S


def main(argv: list[str] | None = None) -> int:
    args, seg = model_on_patients_args(__doc__.split("\n\n")[0], argv)
    patients = non_test_patients(args.data, args.splits)
    scores: dict[str, dict[str, list[float]]] = {c[0]: {"plain": [], "fov": []} for c in CANVASES}
    for patient in patients:
        image, truth = patient_volume_and_truth(patient)  # S x 256 x 256 x 3
        for name, side, r0, c0 in CANVASES:
            canvas = np.zeros((side, side, len(image), 3), np.uint8)
            canvas[r0 : r0 + 256, c0 : c0 + 256] = np.moveaxis(image, 0, 2)
            ref = np.zeros((side, side, len(image)), bool)
            ref[r0 : r0 + 256, c0 : c0 + 256] = np.moveaxis(truth, 0, 2)
            volume = Volume(canvas, _PLS, patient, "volume", False)
            array, frame = to_model_frame(volume)
            for option, fov in (("plain", False), ("fov", True)):
                mask = from_model_frame(seg.with_field_of_view(fov).predict_volume(array), frame)
                scores[name][option].append(volume_dice(mask, ref))
        print(patient.name, {n: [round(v[-1], 3) for v in o.values()] for n, o in scores.items()}, flush=True)
    summary = {
        name: {opt: {"mean": float(np.mean(v)), "median": float(np.median(v))} for opt, v in options.items()}
        for name, options in scores.items()
    }
    summary["patients"] = [p.name for p in patients]  # type: ignore[assignment]
    report_patients(summary, scores, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
