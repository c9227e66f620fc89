"""``Segmenter``: a trained model (checkpoint or ONNX) applied to whole volumes.

``evaluate`` and ``predict`` both go through :meth:`Segmenter.predict_proba`, so the two give the
same masks for the same input. Steps: the checkpoint's preprocessing (per-volume normalisation
at the input's resolution, resize to the training size, and for a 2.5D model each slice stacked with
its stored number of neighbours, ``context_slices``), the network in batches
(optionally with flip TTA), sigmoid, bilinear resize of the probabilities back to the input's
own size, then threshold and the configured post-processing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gliomaseg.data.normalise import PreprocessConfig, preprocess_volume
from gliomaseg.errors import GliomasegError
from gliomaseg.evaluation.postprocess import PostprocessConfig, flip_tta, postprocess_volume
from gliomaseg.inference.backends import LoadedModel, load_onnx, load_torch
from gliomaseg.inference.field_of_view import crop_to_box, window_box, windowed
from gliomaseg.inference.fusion import LogitsFn

__all__ = ["MODEL_FILE", "Segmenter", "load_segmenter", "model_algorithm"]

#: Key of :attr:`Segmenter.meta` recording the model file a segmenter was loaded from:
#: ``{"name": file stem, "sha256": hex digest}`` (not in the file itself: computed on loading).
MODEL_FILE = "model_file"


class Segmenter:
    """Apply a trained network to volumes.

    Args:
        logits_fn: maps a float32 ``B x C x h x w`` tensor (preprocessed, training size; ``C`` is
            ``preprocess.channels``) to ``B x 1 x h x w`` logits.
        preprocess: the preprocessing the model was trained with.
        postprocess: threshold, component filtering, TTA.
        batch_size: slices per forward pass.
        meta: the checkpoint's metadata (model, split id, metrics...), for reports.
        backend: how the network runs, for reports: ``"torchscript-onednn"``, ``"eager"``,
            ``"onnxruntime"`` or ``"custom"`` (a ``logits_fn`` given directly).

    Example:
        >>> from gliomaseg.inference import Segmenter, read_volume
        >>> seg = Segmenter.from_checkpoint("runs/unet__bce_dice__fold0/best.pt")  # doctest: +SKIP
        >>> mask = seg.predict_volume(read_volume("kaggle_3m/TCGA_CS_4942_19970222"))  # doctest: +SKIP
        >>> mask.shape, mask.dtype  # doctest: +SKIP
        ((20, 256, 256), dtype('bool'))
    """

    def __init__(
        self,
        logits_fn: LogitsFn,
        preprocess: PreprocessConfig,
        postprocess: PostprocessConfig | None = None,
        *,
        batch_size: int = 16,
        meta: dict[str, Any] | None = None,
        backend: str = "custom",
    ) -> None:
        if batch_size < 1:
            raise GliomasegError(f"batch_size={batch_size}: must be >= 1")
        self.logits_fn = logits_fn
        self.preprocess = preprocess
        self.postprocess = postprocess or PostprocessConfig()
        self.batch_size = batch_size
        self.meta = meta or {}
        self.backend = backend
        self.members: tuple[Segmenter, ...] = ()
        #: Whether :meth:`predict_proba` runs the network on the head's window (:meth:`with_field_of_view`).
        self.field_of_view = False

    @classmethod
    def _from_loaded(
        cls, loaded: LoadedModel, path: str | Path, postprocess: PostprocessConfig | None, batch_size: int
    ) -> Segmenter:
        post = postprocess or PostprocessConfig.from_dict(loaded.meta.get("postprocess") or {})
        meta = {**loaded.meta, MODEL_FILE: _file_record(Path(path))}
        return cls(loaded.logits_fn, loaded.preprocess, post, batch_size=batch_size, meta=meta, backend=loaded.backend)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        device: str = "auto",
        postprocess: PostprocessConfig | None = None,
        batch_size: int = 8,
        bf16: bool | None = None,
        graph_fusion: bool = True,
    ) -> Segmenter:
        """Load a ``best.pt``/``last.pt`` model file (``weights_only=True``).

        The network runs in eval mode with BatchNorm folded into the convolutions (when exact),
        channels-last and under ``inference_mode``; on the CPU it is also traced to a frozen
        TorchScript graph with oneDNN Graph fusion (when that reproduces the eager logits); see
        :func:`gliomaseg.inference.backends.load_torch`.

        Args:
            path: the model file.
            device: ``auto`` (CUDA, else MPS, else CPU) or a torch device string.
            postprocess: overrides the checkpoint's stored post-processing.
            batch_size: slices per forward pass (8 measured fastest on a 2-core CPU).
            bf16: bfloat16 (a fused bf16 graph on the CPU); None: on where the CPU computes bf16
                natively (see :func:`gliomaseg.inference.backends.load_torch`).
            graph_fusion: on the CPU, run the network as a TorchScript graph fused by oneDNN Graph.
        """
        loaded = load_torch(path, device=device, batch_size=batch_size, bf16=bf16, graph_fusion=graph_fusion)
        return cls._from_loaded(loaded, path, postprocess, batch_size)

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        *,
        threads: int | None = None,
        postprocess: PostprocessConfig | None = None,
        batch_size: int = 8,
    ) -> Segmenter:
        """Load a model exported by :func:`gliomaseg.inference.export.export_onnx` (onnxruntime, CPU).

        Args:
            path: the ``.onnx`` file; its metadata hold the preprocessing and post-processing.
            threads: onnxruntime intra-op threads; default: all cores of this machine.
            postprocess: overrides the stored post-processing.
            batch_size: slices per ``session.run``.

        Raises:
            GliomasegError: the file is missing, not ONNX, or lacks the gliomaseg metadata.
        """
        return cls._from_loaded(load_onnx(path, threads=threads), path, postprocess, batch_size)

    @classmethod
    def ensemble(cls, members: Sequence[Segmenter], postprocess: PostprocessConfig | None = None) -> Segmenter:
        """A segmenter averaging the probabilities of ``members`` before post-processing (nnU-Net's
        fold ensembles: e.g. the k fold models of a study).

        Each member keeps its own preprocessing (members trained at different sizes combine, since
        probabilities are averaged at the input's resolution); flip TTA follows the ensemble's
        setting. The post-processing defaults to the first member's.

        Args:
            members: two or more segmenters.
            postprocess: the ensemble's post-processing (default: the first member's).

        Raises:
            GliomasegError: fewer than two members.

        Example:
            >>> from gliomaseg.inference import load_segmenter
            >>> folds = [f"studies/s/runs/unet__fold{k}/last.pt" for k in range(3)]
            >>> seg = load_segmenter(folds)  # doctest: +SKIP
            >>> len(seg.members)  # doctest: +SKIP
            3
        """
        if len(members) < 2:
            raise GliomasegError(f"an ensemble needs at least two models, got {len(members)}")
        first = members[0]
        post = postprocess or first.postprocess
        meta = {
            **{k: v for k, v in first.meta.items() if k not in ("metrics", "epoch", MODEL_FILE)},
            "split_id": [m.meta.get("split_id") for m in members],
            "ensemble": [m.meta for m in members],
        }
        backend = f"ensemble of {len(members)} ({', '.join(sorted({m.backend for m in members}))})"
        seg = cls(first.logits_fn, first.preprocess, post, batch_size=first.batch_size, meta=meta, backend=backend)
        seg.members = tuple(m.with_postprocess(tta=post.tta) for m in members)
        return seg

    def with_postprocess(self, **changes: Any) -> Segmenter:
        """A copy with some post-processing settings changed (e.g. ``tta=True``)."""
        post = replace(self.postprocess, **changes)
        if self.members:
            seg = Segmenter.ensemble(self.members, post)
        else:
            seg = Segmenter(
                self.logits_fn, self.preprocess, post, batch_size=self.batch_size, meta=self.meta, backend=self.backend
            )
        seg.field_of_view = self.field_of_view
        return seg

    def with_field_of_view(self, on: bool = True) -> Segmenter:
        """A copy whose network sees each volume through the field-of-view window around the head.

        Each volume's slices are cropped or padded to a square around the head sized as kaggle_3m's
        framing (:func:`gliomaseg.inference.field_of_view.windowed`); the probabilities come back in the
        full slices, zero outside the window. ``predict`` and the web page turn it on for NIfTI and DICOM
        inputs, whose framing is unknown; kaggle_3m slices are framed as the training data already.
        """
        seg = self.with_postprocess()
        seg.field_of_view = on
        return seg

    def network_view(self, volume: np.ndarray) -> np.ndarray:
        """The slices the network sees of ``volume``: the field-of-view window when it is on, else ``volume``.

        Args:
            volume: ``S x H x W x 3`` uint8.

        Returns:
            ``S x h x w x 3`` uint8 (a crop or padding of the slices, or ``volume`` itself when the window is
            off or the head is framed as in training already).
        """
        box = window_box(volume[..., 1]) if self.field_of_view else None
        return volume if box is None else crop_to_box(volume, box)

    def probabilities(self, volume: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """:meth:`predict_proba` and the members' probabilities it averaged, from one pass of each member.

        Args:
            volume: ``S x H x W x 3`` uint8.

        Returns:
            ``(mean, members)``: the ``S x H x W`` float32 probabilities and each member's (one entry for a
            single model: the same array), which the quality flag's ensemble disagreement uses.
        """
        probas = self.member_probas(volume)
        return (probas[0] if len(probas) == 1 else np.mean(probas, axis=0, dtype=np.float32)), probas

    def member_probas(self, volume: np.ndarray) -> list[np.ndarray]:
        """Each member's probabilities (an ensemble), or this model's alone, ``S x H x W`` float32 each."""
        volume = _as_volume(volume)
        if self.members:
            if self.field_of_view:
                return [windowed(m.predict_proba, volume) for m in self.members]
            return [m.predict_proba(volume) for m in self.members]
        return [self.predict_proba(volume)]

    def predict_proba(self, volume: np.ndarray) -> np.ndarray:
        """Tumour probabilities for a volume.

        Args:
            volume: ``S x H x W x 3`` uint8 (pre-contrast, FLAIR, post-contrast), one patient's slices
                in order; a single slice is a volume of one (normalisation statistics then come from
                that slice alone).

        Returns:
            ``S x H x W`` float32 probabilities at the input's own resolution.

        Raises:
            GliomasegError: wrong shape or dtype.
        """
        volume = _as_volume(volume)
        if self.members:
            return np.mean(self.member_probas(volume), axis=0, dtype=np.float32)
        if self.field_of_view:
            return windowed(self._network_proba, volume)
        return self._network_proba(volume)

    def _network_proba(self, volume: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` of one model on exactly the slices given."""
        height, width = volume.shape[1:3]
        # S x h x w x C float32; a 2.5D model's neighbours are stacked here, after the per-volume
        # normalisation and on the slices given (the field-of-view window's, when it is on)
        images = preprocess_volume(volume, self.preprocess)
        batch = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        probs = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            tta = self.postprocess.tta
            p = flip_tta(self.logits_fn, chunk) if tta else torch.sigmoid(self.logits_fn(chunk))
            if p.shape[-2:] != (height, width):
                p = F.interpolate(p, size=(height, width), mode="bilinear", align_corners=False)
            probs.append(p[:, 0])
        return torch.cat(probs).numpy().astype(np.float32, copy=False)

    def predict_volume(self, volume: np.ndarray) -> np.ndarray:
        """``S x H x W x 3`` uint8 volume -> ``S x H x W`` bool mask after post-processing."""
        return postprocess_volume(self.predict_proba(volume), self.postprocess)


def _file_record(path: Path) -> dict[str, str]:
    """The :data:`MODEL_FILE` record of a model file: its stem and sha256."""
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    return {"name": path.stem, "sha256": digest}


def model_algorithm(seg: Segmenter) -> tuple[str, str]:
    """``(name, version)`` identifying a segmenter's model, for a DICOM SEG's algorithm identification.

    The name is the model file's stem and architecture (``gliomaseg lgg-unet (unet)``; an ensemble:
    ``gliomaseg ensemble of 3 (unet)``). The version starts with 12 hex digits of the model file's
    sha256 (for an ensemble, of its members' sorted digests), so that it names the exact weights and
    survives the 64-character limit of DICOM; then the gliomaseg version that trained the model and
    its split id. Only the model's metadata go in, nothing of the scans.

    Args:
        seg: a loaded segmenter (a segmenter built from a bare ``logits_fn`` has no file: its name
            and version then come from its metadata alone).

    Returns:
        ``(name, version)``, e.g. ``("gliomaseg lgg-unet (unet)", "sha256:3f1c0e9a7b21, gliomaseg 0.1.0,
        565b4c0391dd:fold0")``.
    """
    from gliomaseg import __version__

    metas = [m.meta for m in seg.members] or [seg.meta]
    arch = str((seg.meta.get("model") or {}).get("name", "model"))
    files = [meta.get(MODEL_FILE) for meta in metas]
    if seg.members:
        name = f"gliomaseg ensemble of {len(metas)} ({arch})"
    elif files[0] and files[0]["name"] != arch:
        name = f"gliomaseg {files[0]['name']} ({arch})"
    else:
        name = f"gliomaseg {arch}"
    version = []
    if all(files):
        digests = sorted(str(f["sha256"]) for f in files if f)
        joined = digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()
        version.append(f"sha256:{joined[:12]}")
    version.append(f"gliomaseg {seg.meta.get('package_version') or __version__}")
    if isinstance(seg.meta.get("split_id"), str):
        version.append(seg.meta["split_id"])
    return name, ", ".join(version)


def load_segmenter(
    path: str | Path | Sequence[str | Path],
    *,
    device: str = "auto",
    postprocess: PostprocessConfig | None = None,
    batch_size: int | None = None,
    bf16: bool | None = None,
    threads: int | None = None,
    graph_fusion: bool | None = None,
) -> Segmenter:
    """A :class:`Segmenter` from a ``.onnx`` export or a ``best.pt``/``last.pt`` model file, or an
    ensemble (:meth:`Segmenter.ensemble`) of several.

    Args:
        path: ``*.onnx`` (onnxruntime, CPU) or a gliomaseg model file (PyTorch); a list of them
            (two or more) is an ensemble whose probabilities are averaged.
        device: PyTorch device for model files; an ONNX model runs on the CPU (``auto``/``cpu`` only).
        postprocess: overrides the stored post-processing.
        batch_size: slices per forward pass; None takes the backend's default.
        bf16: bfloat16 autocast (model files only); None takes the default.
        threads: onnxruntime intra-op threads (ONNX only); None = all cores.
        graph_fusion: TorchScript + oneDNN Graph on the CPU (model files only); None takes the
            default (on). Off saves about 0.45 s of loading, which is more than it gains below ~800 slices.

    Raises:
        GliomasegError: options that do not apply to the file's backend, or an unreadable file.
    """
    if not isinstance(path, str | Path):
        paths = list(path)
        options = {"device": device, "batch_size": batch_size, "bf16": bf16, "threads": threads}
        if len(paths) == 1:
            return load_segmenter(paths[0], postprocess=postprocess, graph_fusion=graph_fusion, **options)
        members = [load_segmenter(p, graph_fusion=graph_fusion, **options) for p in paths]
        return Segmenter.ensemble(members, postprocess)
    path = Path(path)
    extra: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    if path.suffix.lower() == ".onnx":
        if bf16:
            raise GliomasegError(f"{path}: bf16 applies to PyTorch model files; the ONNX model runs in float32")
        if graph_fusion is not None:
            raise GliomasegError(f"{path}: graph_fusion applies to PyTorch model files, not to ONNX models")
        if device not in ("auto", "cpu"):
            raise GliomasegError(f"{path}: ONNX models run on the CPU; got device={device!r} (use auto or cpu)")
        return Segmenter.from_onnx(path, threads=threads, postprocess=postprocess, **extra)
    if threads is not None:
        raise GliomasegError(f"{path}: threads applies to ONNX models; use torch.set_num_threads for model files")
    if bf16 is not None:
        extra["bf16"] = bf16
    if graph_fusion is not None:
        extra["graph_fusion"] = graph_fusion
    return Segmenter.from_checkpoint(path, device=device, postprocess=postprocess, **extra)


def _as_volume(volume: np.ndarray) -> np.ndarray:
    """``volume`` as ``S x H x W x 3`` uint8 (a single ``H x W x 3`` slice is a volume of one).

    Raises:
        GliomasegError: another shape or dtype.
    """
    if volume.ndim == 3 and volume.shape[-1] == 3:
        volume = volume[None]
    if volume.ndim != 4 or volume.shape[-1] != 3 or volume.dtype != np.uint8:
        raise GliomasegError(
            f"expected an S x H x W x 3 uint8 volume (pre-contrast, FLAIR, post-contrast), "
            f"got shape {volume.shape} dtype {volume.dtype}"
        )
    return volume
