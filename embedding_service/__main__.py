"""Runs the embedding service: `python -m embedding_service` or `facerec serve embedder`."""

from __future__ import annotations

import os
from collections.abc import Sequence

from embedding_service.config import Settings
from embedding_service.service import SERVICE_NAME, build_server
from facerec.bootstrap import Hosting, run_service
from facerec.metrics import ServiceMetrics


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.parse(
        argv,
        os.environ,
        "facerec serve embedder",
        "FaceNet embeddings over gRPC, with dynamic batching across callers.",
    )
    run_service("embedder", SERVICE_NAME, settings, lambda metrics: _build(settings, metrics))


def _build(settings: Settings, metrics: ServiceMetrics) -> Hosting:
    from embedding_service.batcher import EmbeddingBatcher
    from embedding_service.embedder import Embedder
    from facerec.calibration import load_calibration

    embedder = Embedder.load(settings)
    # A calibration file that is not one stops the start here, in one sentence (exit 2), not later.
    load_calibration(settings.calibration_path, embedder.name)
    batcher = EmbeddingBatcher.from_settings(embedder, settings, on_batch=metrics.observe_batch)
    return Hosting(
        build_server=lambda health, interceptors, credentials: build_server(
            settings, batcher, health, interceptors, credentials
        ),
        warm_up=batcher.warm_up,
        watch=lambda m: m.watch_queue(batcher.queue_depth),
        close=batcher.close,
        ready=f"embedder ready: {embedder.name} ({embedder.precision}) on {embedder.runtime}, "
        f"max batch {batcher.max_batch}",
    )


if __name__ == "__main__":
    main()
