"""Kept face pictures: which format, quality and size keeps a face's embedding (gallery/pictures.py's choice).

    .venv/bin/python -m bench.face_pictures                       # the grid on MTCNN + box (about 3 minutes)
    .venv/bin/python -m bench.face_pictures --detectors mtcnn:similarity,retinaface:box,retinaface:similarity \
        --formats webp90 --sizes 256                              # the chosen one under the other contracts

Over the 118 5-celebrity pictures: each picture's largest face is detected and embedded (fp32 FaceNet, in
this process) and its kept picture made (gallery.pictures.face_picture). Two cosines with the original
embedding, per detector, format and size (mean and minimum):
- "again": the face detected again on the kept picture (the detection nearest the kept box), aligned and
  embedded: what a re-embed does. Detectors place a face's box a little differently when the picture is
  framed differently, so this is bounded by the baseline row "crop": the same region cut losslessly at
  full resolution and detected again (no encoding, no shrinking).
- "same box": the original detection's box (box alignment) or landmarks (similarity) carried onto the kept
  picture and aligned there: the loss of the encoding and the shrinking alone.
Also the faces not found again ("lost") and the mean bytes of a kept picture. The pick is the smallest
whose same-box minimum is >= 0.995 and whose "again" mean is within 0.005 of the crop's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gallery.pictures import ENLARGEMENT, PictureFormat, face_picture
from gallery.rows import KeptPicture

FORMATS = {
    "jpeg85": PictureFormat("jpeg", 85),
    "jpeg90": PictureFormat("jpeg", 90),
    "jpeg95": PictureFormat("jpeg", 95),
    "jpeg95-444": PictureFormat("jpeg", 95, chroma_444=True),
    "jpeg97-444": PictureFormat("jpeg", 97, chroma_444=True),
    "jpeg98-444": PictureFormat("jpeg", 98, chroma_444=True),
    "jpeg99-444": PictureFormat("jpeg", 99, chroma_444=True),
    "jpeg100-444": PictureFormat("jpeg", 100, chroma_444=True),
    "webp80": PictureFormat("webp", 80),
    "webp90": PictureFormat("webp", 90),
    "webp100": PictureFormat("webp", 100),
    "webp-lossless": PictureFormat("webp", 100, lossless=True),
    "png": PictureFormat("png"),
}
DEFAULT_FORMATS = (
    "jpeg85,jpeg90,jpeg95,jpeg95-444,jpeg97-444,jpeg98-444,jpeg99-444,jpeg100-444,webp80,webp90,webp100,"
    "webp-lossless,png"
)


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Row:
    again_mean: float
    again_min: float
    lost: int
    same_mean: float
    same_min: float
    mean_bytes: float


@dataclass
class Faces:
    """The pictures' largest faces under one detector and alignment, with their original embeddings."""

    options: Any  # detector_service.detector.DetectOptions
    pictures: list[NDArray[np.uint8]]
    faces: list[Any]  # detector_service.detector.Detection
    reference: NDArray[np.float32]


def _same_box(
    picture: NDArray[np.uint8], face: Any, kept: KeptPicture, similarity: bool
) -> NDArray[np.uint8]:
    """The aligned crop of the kept picture at the original detection carried over (box, or landmarks)."""
    from facerec import alignment

    b = face.box
    if similarity:
        scale = np.array([kept.box[2] / b.width, kept.box[3] / b.height])
        points = (face.landmarks.as_array() - [b.x, b.y]) * scale + kept.box[:2]
        return alignment.similarity_crop(picture, points)
    x, y, w, h = (round(v) for v in kept.box)
    return alignment.box_crop(picture, (x, y, w, h))


def measure(
    detector: Any, embedder: Any, faces: Faces, fmt: PictureFormat, side: int, enlargement: float
) -> Row:
    """One format and size over every face (see the module docstring)."""
    from detector_service.detector import Alignment
    from facerec.images import decode_image
    from gallery.ports import DetectedFace
    from gallery.reembed import best_match

    similarity = faces.options.alignment is Alignment.SIMILARITY
    again: list[NDArray[np.uint8]] = []
    same: list[NDArray[np.uint8]] = []
    found: list[int] = []
    sizes: list[int] = []
    for j, (picture, face) in enumerate(zip(faces.pictures, faces.faces, strict=True)):
        b = face.box
        kept = face_picture(picture, (b.x, b.y, b.width, b.height), side, enlargement, fmt)
        sizes.append(len(kept.data))
        decoded = decode_image(kept.data)
        same.append(_same_box(decoded, face, kept, similarity))
        # The re-embed's own choice of face on a kept picture (gallery/reembed.py).
        detected = [
            DetectedFace((d.box.x, d.box.y, d.box.width, d.box.height), d.confidence, (), d.crop)
            for d in detector.detect([decoded], faces.options)[0]
        ]
        match = best_match(detected, kept.box)
        if match is not None:
            again.append(match.crop)
            found.append(j)
    cos = np.sum(embedder.embed(again) * faces.reference[found], axis=1) if again else np.zeros(1)
    cos_same = np.sum(embedder.embed(same) * faces.reference, axis=1)
    return Row(
        float(cos.mean()),
        float(cos.min()),
        len(faces.faces) - len(found),
        float(cos_same.mean()),
        float(cos_same.min()),
        float(np.mean(sizes)),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--detectors", default="mtcnn:box", help="model:alignment, comma-separated")
    parser.add_argument("--formats", default=DEFAULT_FORMATS, help=f"of {', '.join(FORMATS)}")
    parser.add_argument("--sizes", default="224,256,320", help="largest side in pixels, comma-separated")
    parser.add_argument("--enlargement", type=float, default=ENLARGEMENT)
    args = parser.parse_args(argv)

    from detector_service.config import Settings as DetectorSettings
    from detector_service.detector import Alignment, DetectOptions, Detector, DetectorModel
    from embedding_service.config import Settings as EmbedderSettings
    from embedding_service.embedder import Embedder
    from facerec import assets
    from facerec.images import decode_image

    fetched = assets.fetch(assets.facerec_home(os.environ))
    paths = [p for split in ("train", "val") for _, p in assets.labelled_images(fetched.split(split))]
    datas = [p.read_bytes() for p in paths]
    uprights = [decode_image(d) for d in datas]
    detector = Detector.load(DetectorSettings.from_env(os.environ))
    embedder = Embedder.load(dataclasses.replace(EmbedderSettings.from_env(os.environ), precision="fp32"))
    sizes = [int(s) for s in args.sizes.split(",")]
    formats = [FORMATS[f] for f in args.formats.split(",")]
    out(f"{len(datas)} pictures, {embedder.name}, region {args.enlargement}x the box's longer side")
    out(f"the original pictures: mean {np.mean([len(d) for d in datas]):.0f} bytes")
    out(
        f"{'detector':22s} {'format':16s} {'side':>6s} {'again mean':>10s} {'min':>7s} {'lost':>5s} "
        f"{'same box mean':>13s} {'min':>7s} {'bytes':>7s}"
    )
    picks: list[tuple[float, str]] = []
    for spec in args.detectors.split(","):
        model, alignment = spec.split(":")
        options = DetectOptions(return_crops=True, model=DetectorModel(model), alignment=Alignment(alignment))
        detected = [(u, detector.detect([u], options)[0]) for u in uprights]
        pictures = [u for u, found in detected if found]
        largest = [max(found, key=lambda f: f.box.width * f.box.height) for _, found in detected if found]
        faces = Faces(
            options, pictures, largest, embedder.embed([f.crop for f in largest if f.crop is not None])
        )

        def line(label: str, side: str, row: Row, spec: str = spec) -> None:
            out(
                f"{spec:22s} {label:16s} {side:>6s} {row.again_mean:10.4f} {row.again_min:7.4f} {row.lost:5d} "
                f"{row.same_mean:13.4f} {row.same_min:7.4f} {row.mean_bytes:7.0f}"
            )

        # The ceiling of "again": the region cut losslessly at full resolution, detected again.
        ceiling = measure(detector, embedder, faces, PictureFormat("png"), 1 << 20, args.enlargement)
        line("crop (baseline)", "full", ceiling)
        for fmt in formats:
            for side in sizes:
                row = measure(detector, embedder, faces, fmt, side, args.enlargement)
                line(fmt.label, str(side), row)
                if row.same_min >= 0.995 and row.again_mean >= ceiling.again_mean - 0.005:
                    picks.append(
                        (row.mean_bytes, f"{spec} {fmt.label} {side} px ({row.mean_bytes:.0f} bytes)")
                    )
    out()
    out(
        "pick (smallest with same-box min >= 0.995 and again mean within 0.005 of the crop's): "
        + (min(picks)[1] if picks else "none")
    )


if __name__ == "__main__":
    main()
