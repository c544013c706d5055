"""How the gallery decides: thresholds, classifier and index limits, enrolment floors. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from facerec.calibration import (
    DEFAULT_IDENTIFICATION_THRESHOLD,
    DEFAULT_OPERATING_POINT,
    DEFAULT_POINTS,
    DEFAULT_THRESHOLD,
    IDENTIFICATION,
    Calibration,
    OperatingPoint,
)
from facerec.errors import InvalidInput
from gallery import validation
from gallery.ports import DetectedFace, DetectorOptions
from gallery.results import NotIdentifiable


@dataclass(frozen=True)
class GalleryOptions:
    """How the gallery decides. Enroll quality floors of 0 accept every face the detector returns."""

    threshold: float = DEFAULT_THRESHOLD
    threshold_source: str = "default"
    # The named points requests may ask for, and the one `threshold` is (facerec.calibration).
    operating_points: tuple[OperatingPoint, ...] = DEFAULT_POINTS
    operating_point: str = DEFAULT_OPERATING_POINT
    # Identify's default: the nearest of many faces lies closer than a typical pair (facerec.calibration).
    identification_threshold: float = DEFAULT_IDENTIFICATION_THRESHOLD
    svm_max_identities: int = 1000
    # A stale SVM is refit on the request when that refit is predicted to take at most this long; else in
    # the background (gallery.classifier.StoreClassifier).
    svm_inline_refit_max_s: float = 0.05
    ivf_min_size: int = 50_000
    nprobe: int | None = None
    dimension: int = 128
    enroll_min_confidence: float = 0.0
    enroll_min_face_px: float = 0.0
    # Faces below these floors are not identified (Identify) or compared (Verify): their embeddings are
    # unreliable. 20 px is MTCNN's own smallest face; the 5-celebrity pictures' faces of interest all
    # pass both, the 17-18 px background faces some of them hold do not.
    identify_min_face_px: float = 20.0
    identify_min_confidence: float = 0.8
    max_images_per_request: int = 64
    max_embeddings_per_request: int = 1000
    detect_options: DetectorOptions = field(default_factory=DetectorOptions)
    # Keep each enrolled picture whole beside the face's kept picture (gallery/pictures.py): a collection's
    # choice (CollectionManager sets it), off by default: a picture is ~100x a kept face's bytes.
    keep_source_pictures: bool = False
    # With a shared store, how long a replica waits for a change notification before it looks anyway.
    follow_poll_s: float = 0.5

    def calibration(self, model: str) -> Calibration:
        """These options' thresholds, as the calibration a gallery without a calibration file serves."""
        return Calibration(
            self.threshold,
            self.threshold_source,
            model,
            self.identification_threshold,
            self.operating_point,
            self.operating_points,
        )

    def unidentifiable(self, face: DetectedFace) -> tuple[NotIdentifiable, str] | None:
        """Why this face is not to be compared with the gallery, or None when it may be."""
        side = min(face.box[2], face.box[3])
        if side < self.identify_min_face_px:
            return NotIdentifiable.FACE_TOO_SMALL, (
                f"The face is {face.box[2]:.0f}x{face.box[3]:.0f} px, smaller than the "
                f"{self.identify_min_face_px:.0f} px needed to identify it reliably."
            )
        if face.confidence < self.identify_min_confidence:
            return NotIdentifiable.DETECTION_TOO_UNSURE, (
                f"The detector is {face.confidence:.0%} sure this is a face, less than the "
                f"{self.identify_min_confidence:.0%} needed to identify it."
            )
        return None


def decision(
    current: Calibration, threshold: float, operating_point: str, identify: bool
) -> tuple[float, str]:
    """The threshold a request asked for (a distance, a point's name, or neither: the default of
    Identify or of Verify) and the name of its point ("" for a distance the request gave)."""
    if threshold and operating_point:
        raise InvalidInput("Give a threshold or an operating point, not both.", field="operating_point")
    if operating_point:
        return validation.operating_point(operating_point, current, identify)
    if identify:
        return validation.threshold(threshold, current.identification_threshold), (
            "" if threshold else IDENTIFICATION
        )
    return validation.threshold(threshold, current.threshold), "" if threshold else current.operating_point
