"""Runs the detection service: `facerec serve detector [flags]` or `python -m detector_service [flags]`."""

from __future__ import annotations

import os
from collections.abc import Sequence

from detector_service.config import Settings
from detector_service.service import SERVICE_NAME, build_detector_server
from facerec.assets import FetchError
from facerec.bootstrap import Hosting, run_service
from facerec.errors import Precondition
from facerec.metrics import ServiceMetrics


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.parse(argv, os.environ, "facerec serve detector", "The MTCNN detection service.")
    run_service("detector", SERVICE_NAME, settings, lambda metrics: _build(settings, metrics))


def _build(settings: Settings, metrics: ServiceMetrics) -> Hosting:
    if settings.runtime == "tensorflow":
        # Only the TensorFlow runtime imports it: on onnxruntime a serving detector never loads
        # TensorFlow (hundreds of MB resident), unless its ONNX files must be exported first.
        from facerec.tfconfig import pin_threads, quiet_tensorflow

        quiet_tensorflow()
        pin_threads(settings.intra_op_threads, settings.inter_op_threads)

    from detector_service.batcher import BatchingDetector
    from detector_service.detector import Detector

    try:
        loaded = Detector.load(settings)
    except FetchError as exc:  # RetinaFace's weights missing or damaged: one sentence, exit 1
        raise Precondition(str(exc)) from None
    detector = BatchingDetector(
        loaded,
        max_batch=settings.max_batch,
        max_delay_ms=settings.max_delay_ms,
        max_queue=settings.max_queue,
        on_batch=metrics.observe_batch,
    )
    return Hosting(
        build_server=lambda health, interceptors, credentials: build_detector_server(
            settings, detector, health, interceptors, credentials
        ),
        warm_up=detector.warm_up,
        watch=lambda m: m.watch_queue(detector.batcher.queue_depth),
        close=detector.close,
        ready="warmed up; serving",
    )


if __name__ == "__main__":
    main()
