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
    from embedding_service.models import ModelRepository, load_embedders
    from facerec.calibration import load_calibration

    embedders = load_embedders(settings)
    for embedder in embedders:
        # A calibration file that is not one stops the start here, in one sentence (exit 2), not later.
        load_calibration(settings.calibration_path, embedder.name)
    models = ModelRepository.from_settings(embedders, settings, on_batch=metrics.observe_batch)
    served = ", ".join(f"{e.name} ({e.precision})" for e in embedders)
    return Hosting(
        build_server=lambda health, interceptors, credentials: build_server(
            settings, models, health, interceptors, credentials
        ),
        warm_up=models.warm_up,
        watch=lambda m: m.watch_queue(models.queue_depth),
        close=models.close,
        ready=f"embedder ready: {served} on {embedders[0].runtime}, default {embedders[0].name}, "
        f"max batch {models.default.max_batch}",
    )


if __name__ == "__main__":
    main()
