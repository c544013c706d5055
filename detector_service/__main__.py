"""Runs the detection service: `facerec serve detector [flags]` or `python -m detector_service [flags]`."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from detector_service import config
from facerec import security

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    settings = config.parse(argv, os.environ)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Read the TLS files and tokens before the model loads, so a wrong path fails in a second.
    auth = security.token_interceptor(settings.tokens_file, settings.tokens, prefix=config.PREFIX)
    credentials = security.server_credentials(settings.tls, config.PREFIX)
    from facerec.tfconfig import pin_threads, quiet_tensorflow

    quiet_tensorflow()
    pin_threads(settings.intra_op_threads, settings.inter_op_threads)

    from detector_service.detector import BatchingDetector, Detector
    from detector_service.service import SERVICE_NAME, build_detector_server
    from facerec.metrics import ServiceMetrics, start_metrics_server
    from facerec.server import Health, announce, serve_until_signalled

    metrics = ServiceMetrics("detector")
    detector = BatchingDetector(
        Detector.load(settings),
        max_batch=settings.max_batch,
        max_delay_ms=settings.max_delay_ms,
        max_queue=settings.max_queue,
        on_batch=metrics.observe_batch,
    )
    health = Health([SERVICE_NAME])
    interceptors = []
    if settings.metrics_port:
        metrics.watch_queue(detector.batcher.queue_depth)
        interceptors.append(metrics.interceptor())
        start_metrics_server(settings.metrics_port, metrics.registry, settings.host)
    interceptors += auth  # inside metrics, so refused calls are counted too
    server, port = build_detector_server(settings, detector, health, interceptors, credentials)
    server.start()
    detector.warm_up()
    health.set_serving()
    log.info("warmed up; serving")
    announce("detector", settings.host, port)
    try:
        serve_until_signalled(server, health, settings.grace_s)
    finally:
        detector.close()


if __name__ == "__main__":
    main()
