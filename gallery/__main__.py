"""`python -m gallery` / `facerec serve gallery`: open the store, build the index, serve.

Health is SERVING once the store and the index are loaded; the detector and the embedder need not
be up. The model is asked of the embedder at start; when it is down, the gallery assumes
DEFAULT_MODEL (or --model) and checks every embedder answer against it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

from facerec import security
from facerec.bootstrap import Hosting, run_service
from facerec.calibration import Calibration, CalibrationSource
from facerec.errors import FacerecError
from facerec.metrics import ServiceMetrics
from gallery.backend import BackendSettings, open_backend
from gallery.clients import DetectorClient, EmbedderClient
from gallery.config import DEFAULT_MODEL, Settings
from gallery.gallery import Gallery
from gallery.service import SERVICE_NAME, WRITE_METHODS, build_server

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.parse(argv, os.environ, "gallery", "The facerec gallery service.")
    run_service("gallery", SERVICE_NAME, settings, lambda metrics: _build(settings), WRITE_METHODS)


def _build(settings: Settings) -> Hosting:
    downstream = security.channel_credentials(
        settings.downstream_tls_ca, settings.downstream_tls_cert, settings.downstream_tls_key
    )
    detector = DetectorClient(
        settings.detector,
        settings.downstream_timeout_s,
        settings.detect_images_per_call,
        max_message_bytes=settings.max_message_bytes,
        credentials=downstream,
        token=settings.downstream_token,
        max_waiting=settings.max_calls_per_downstream,
    )
    embedder = EmbedderClient(
        settings.embedder,
        settings.downstream_timeout_s,
        settings.embed_faces_per_call,
        max_message_bytes=settings.max_message_bytes,
        credentials=downstream,
        token=settings.downstream_token,
        max_waiting=settings.max_calls_per_downstream,
    )
    log.debug(
        "detector %s, embedder %s, at most %s calls waiting on each, downstream deadline %.1f s",
        settings.detector,
        settings.embedder,
        settings.max_calls_per_downstream,
        settings.downstream_timeout_s,
    )
    model = settings.model or _model_of(embedder)
    # Re-read when the file changes, so `facerec eval --save-threshold` applies without a restart;
    # a threshold given as a setting overrides the calibrated one. An unusable file raises
    # CalibrationFileError (a ValueError) at the first read below: the start stops (exit 2), in one sentence.
    source = CalibrationSource(settings.calibration_path, model)

    def calibration() -> Calibration:
        current = source.current()
        return dataclasses.replace(
            current,
            threshold=settings.threshold or current.threshold,
            source="override" if settings.threshold else current.source,
            # an overridden threshold is no calibrated point; the points stay nameable
            operating_point="" if settings.threshold else current.operating_point,
            identification_threshold=settings.identification_threshold or current.identification_threshold,
        )

    options = settings.gallery_options(calibration().threshold, calibration().source)
    backend = open_backend(
        BackendSettings(
            settings.store,
            model,
            options.dimension,
            settings.store_password_file,
            settings.milvus(),
            settings.index_reconcile_s,
            options.ivf_min_size,
            options.nprobe,
            # FAISS IVF makes sure of every face within Identify's threshold (gallery.index.FaceIndex).
            exact_beyond=calibration().identification_threshold,
            follow_poll_s=options.follow_poll_s,
        )
    )
    gallery = Gallery(backend, detector, embedder, options, calibration)

    def close() -> None:
        gallery.close()
        detector.close()
        embedder.close()

    def watch(metrics: ServiceMetrics) -> None:
        metrics.watch_gallery(lambda: gallery.stats().faces, lambda: gallery.stats().identities)

    return Hosting(
        build_server=lambda health, interceptors, credentials: build_server(
            settings, gallery, health, interceptors, credentials
        ),
        warm_up=lambda: backend.start_checkpoints(settings.index_checkpoint_s),
        watch=watch,
        close=close,
        ready=f"gallery of {model} (threshold {gallery.threshold:.3f}) on {settings.host}:{settings.port}",
    )


def _model_of(embedder: EmbedderClient) -> str:
    try:
        return embedder.model_info(timeout_s=5.0).name or DEFAULT_MODEL
    except FacerecError as exc:
        log.warning("%s Assuming model %s; every embedding will be checked against it.", exc, DEFAULT_MODEL)
        return DEFAULT_MODEL


if __name__ == "__main__":
    main()
