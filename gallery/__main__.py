"""`python -m gallery` / `facerec serve gallery`: open the catalog and every collection's store and
index (gallery/collections.py), serve.

Health is SERVING once the stores and the indexes are loaded; the detector and the embedder need not
be up. The model is asked of the embedder at start; when it is down, the gallery assumes
DEFAULT_MODEL (or --model) and checks every embedder answer against it. The catalog lives beside the
gallery's own store, which is the default collection: on the first start it records that store's model
(the deployment's when it is new), GALLERY_DETECTOR_MODEL (empty = retinaface; a gallery made before
collections holds MTCNN's faces, so it is recorded as mtcnn) and GALLERY_ALIGNMENT.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Sequence

from facerec import security
from facerec.bootstrap import Hosting, run_service
from facerec.calibration import Calibration, CalibrationSource, calibration_from_text
from facerec.errors import FacerecError, InvalidInput
from facerec.metrics import ServiceMetrics
from gallery.backend import (
    Backend,
    BackendSettings,
    milvus_collection_for,
    open_backend,
)
from gallery.clients import DetectorClient, EmbedderClient
from gallery.collections import CollectionManager
from gallery.collections import open_catalog as open_collection_catalog
from gallery.config import DEFAULT_DETECTOR, DEFAULT_MODEL, Settings
from gallery.milvus_upkeep import MilvusUpkeep, drop_generation
from gallery.namespaces import store_location
from gallery.ports import DEFAULT_COLLECTION, CollectionRow, Contract
from gallery.reembed import Reembedder, ReembedSettings
from gallery.service import SERVICE_NAME, WRITE_METHODS, build_server
from gallery.stores import open_store, stored_model

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
    defaults = Contract(settings.detector_model or DEFAULT_DETECTOR, settings.alignment, model)
    try:
        # An existing gallery becomes the default collection with the model it holds. The catalog records
        # this only on its first open, so a gallery already there then was made before collections, when
        # every face came from MTCNN: its default collection stays mtcnn whatever the deployment's default.
        existing = dataclasses.replace(
            defaults, detector="mtcnn", model=stored_model(settings.store, settings.store_password_file)
        )
    except InvalidInput:
        existing = defaults
    catalog = open_collection_catalog(settings.store, existing, settings.store_password_file)
    # Re-read when the file changes, so `facerec eval --save-threshold` applies without a restart;
    # a threshold given as a setting overrides the calibrated one. An unusable file raises
    # CalibrationFileError (a ValueError) at the first read below: the start stops (exit 2), in one sentence.
    sources: dict[tuple[str, str], CalibrationSource] = {}

    @functools.lru_cache(maxsize=256)
    def stored_points(model: str, points: str) -> Calibration:
        return calibration_from_text(points, model, "the collection's operating points")

    def calibration_of(contract: Contract, points: str) -> Calibration:
        """A collection's thresholds: its stored points, else its model's in the calibration file (the
        ones shipped for its model and detector when the file has none); settings' thresholds override
        either."""
        if points:
            current = stored_points(contract.model, points)
        else:
            key = (contract.model, contract.detector)
            if key not in sources:
                sources[key] = CalibrationSource(settings.calibration_path, *key)
            current = sources[key].current()
        return dataclasses.replace(
            current,
            threshold=settings.threshold or current.threshold,
            source="override" if settings.threshold else current.source,
            # an overridden threshold is no calibrated point; the points stay nameable
            operating_point="" if settings.threshold else current.operating_point,
            identification_threshold=settings.identification_threshold or current.identification_threshold,
        )

    default_row = catalog.get(DEFAULT_COLLECTION)
    first = calibration_of(default_row.contract, default_row.points)
    options = settings.gallery_options(first.threshold, first.source)
    milvus = settings.milvus()

    def open_storage(row: CollectionRow, generation: int) -> Backend:
        backend = open_backend(
            BackendSettings(
                store_location(settings.store, row.collection_id, generation),
                row.contract.model,
                options.dimension,
                settings.store_password_file,
                milvus,
                settings.index_reconcile_s,
                options.ivf_min_size,
                options.nprobe,
                # FAISS IVF makes sure of every face within Identify's threshold (gallery.index.FaceIndex).
                exact_beyond=calibration_of(row.contract, row.points).identification_threshold,
                follow_poll_s=options.follow_poll_s,
                # Each collection generation has a Milvus collection of its own (gallery/index_milvus.py).
                milvus_collection=milvus_collection_for(milvus, row.collection_id, generation),
            )
        )
        backend.start_checkpoints(settings.index_checkpoint_s)
        return backend

    # A deleted collection's generation, or the one a re-embed replaced: its store, then its Milvus
    # collection (one Milvus cannot drop then is left to the sweep of MilvusUpkeep).
    drop = functools.partial(drop_generation, settings.store, settings.store_password_file, milvus)

    try:
        manager = CollectionManager(
            catalog,
            open_storage,
            drop,
            lambda row, generation, model: open_store(
                store_location(settings.store, row.collection_id, generation),
                model,
                options.dimension,
                settings.store_password_file,
            ),
            detector,
            embedder,
            options,
            calibration_of,
            defaults,
            options.follow_poll_s,
        )
    except BaseException:
        catalog.close()
        raise
    # Re-embeds run in any replica: each takes the operations nobody runs (or whose runner died).
    operations = Reembedder(
        catalog,
        manager,
        detector,
        embedder,
        ReembedSettings(batch=settings.reembed_batch, stale_after_s=settings.reembed_stale_s),
        timeout_s=settings.downstream_timeout_s,
    )

    upkeep = None if milvus is None else MilvusUpkeep(milvus, catalog)

    def start() -> None:
        manager.start()
        operations.start_thread()
        if upkeep is not None:
            upkeep.start()

    def close() -> None:
        if upkeep is not None:
            upkeep.stop()
        operations.stop()
        manager.close()
        detector.close()
        embedder.close()

    def watch(metrics: ServiceMetrics) -> None:
        # Every collection together: the gauges are the deployment's.
        metrics.watch_gallery(lambda: manager.totals()[1], lambda: manager.totals()[0])

    default = manager.get(DEFAULT_COLLECTION)
    return Hosting(
        build_server=lambda health, interceptors, credentials: build_server(
            settings, manager, health, interceptors, credentials, operations
        ),
        # Other replicas' new, deleted and re-embedded collections are followed once serving.
        warm_up=start,
        watch=watch,
        close=close,
        ready=f"gallery of {default.model} (threshold {default.threshold:.3f}), "
        f"{len(manager.names())} collection(s), on {settings.host}:{settings.port}",
    )


def _model_of(embedder: EmbedderClient) -> str:
    try:
        return embedder.model_info(timeout_s=5.0).name or DEFAULT_MODEL
    except FacerecError as exc:
        log.warning("%s Assuming model %s; every embedding will be checked against it.", exc, DEFAULT_MODEL)
        return DEFAULT_MODEL


if __name__ == "__main__":
    main()
