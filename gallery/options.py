"""How the gallery decides: thresholds, classifier and index limits, enrolment floors. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from facerec.calibration import (
    DEFAULT_IDENTIFICATION_THRESHOLD,
    DEFAULT_OPERATING_POINT,
    DEFAULT_POINTS,
    DEFAULT_THRESHOLD,
    OperatingPoint,
)
from gallery.ports import DetectorOptions


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
    # With a shared store, how long a replica waits for a change notification before it looks anyway.
    follow_poll_s: float = 0.5
