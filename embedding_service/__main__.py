"""Runs the embedding service: `python -m embedding_service` or `facerec serve embedder`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from embedding_service.config import Settings
from facerec.settings import RUNTIMES, SettingError

log = logging.getLogger(__name__)


def parse_settings(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    """CLI flags over EMBEDDER_* variables over the defaults."""
    parser = argparse.ArgumentParser(
        prog="facerec serve embedder",
        description="FaceNet embeddings over gRPC, with dynamic batching across callers.",
    )
    try:
        d = Settings.from_env(environ)
    except SettingError as exc:
        parser.error(str(exc))
    parser.add_argument("--host", default=d.host, help="address to listen on (EMBEDDER_HOST)")
    parser.add_argument("--port", type=int, default=d.port, help="0 picks a free port (EMBEDDER_PORT)")
    parser.add_argument("--max-batch", type=int, default=d.max_batch, help="faces per model call")
    parser.add_argument(
        "--max-delay-ms", type=float, default=d.max_delay_ms, help="wait this long for a batch to fill"
    )
    parser.add_argument(
        "--max-queue", type=int, default=d.max_queue, help="waiting calls beyond: RESOURCE_EXHAUSTED"
    )
    parser.add_argument(
        "--batching",
        action=argparse.BooleanOptionalAction,
        default=d.batching,
        help="merge concurrent calls (--no-batching: one face per model call)",
    )
    parser.add_argument("--max-faces-per-request", type=int, default=d.max_faces_per_request)
    parser.add_argument("--max-request-bytes", type=int, default=d.max_request_bytes)
    parser.add_argument(
        "--max-face-pixels", type=int, default=d.max_face_pixels, help="largest decoded encoded face"
    )
    parser.add_argument("--max-workers", type=int, default=d.max_workers, help="gRPC worker threads")
    parser.add_argument("--weights", type=Path, default=d.weights_path, help="facenet_keras.h5")
    parser.add_argument("--calibration", type=Path, default=d.calibration_path, help="calibration.json")
    parser.add_argument(
        "--intra-threads", type=int, default=d.intra_threads, help="TensorFlow intra-op threads"
    )
    parser.add_argument(
        "--inter-threads", type=int, default=d.inter_threads, help="TensorFlow inter-op threads"
    )
    parser.add_argument("--runtime", choices=RUNTIMES, default=d.runtime, help="inference runtime")
    parser.add_argument(
        "--tls-cert", default=d.tls_cert, help="PEM certificate chain: serve TLS (EMBEDDER_TLS_CERT)"
    )
    parser.add_argument(
        "--tls-key", default=d.tls_key, help="PEM private key of --tls-cert (EMBEDDER_TLS_KEY)"
    )
    parser.add_argument(
        "--tls-client-ca", default=d.tls_client_ca, help="require client certificates of this CA (mutual TLS)"
    )
    parser.add_argument(
        "--tokens-file", default=d.tokens_file, help="`token role` per line: require a bearer token"
    )
    parser.add_argument("--tokens", default=d.tokens, help="inline tokens, comma-separated (EMBEDDER_TOKENS)")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=d.metrics_port,
        help="Prometheus /metrics port; 0 = none (EMBEDDER_METRICS_PORT)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    args = parser.parse_args(argv)
    try:
        settings = dataclasses.replace(
            d,
            host=args.host,
            port=args.port,
            max_batch=args.max_batch,
            max_delay_ms=args.max_delay_ms,
            max_queue=args.max_queue,
            batching=args.batching,
            max_faces_per_request=args.max_faces_per_request,
            max_request_bytes=args.max_request_bytes,
            max_face_pixels=args.max_face_pixels,
            max_workers=args.max_workers,
            weights_path=args.weights,
            calibration_path=args.calibration,
            intra_threads=args.intra_threads,
            inter_threads=args.inter_threads,
            runtime=args.runtime,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            tokens_file=args.tokens_file,
            tokens=args.tokens,
            metrics_port=args.metrics_port,
        )
    except SettingError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return settings


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv, os.environ)
    from facerec import security

    # Read the TLS files and tokens before the model loads, so a wrong path fails in a second.
    interceptors = security.token_interceptor(settings.tokens_file, settings.tokens, prefix="EMBEDDER_")
    credentials = security.server_credentials(settings.tls, "EMBEDDER_")
    from embedding_service.batcher import EmbeddingBatcher
    from embedding_service.embedder import Embedder
    from embedding_service.service import SERVICE_NAME, build_server
    from facerec.metrics import ServiceMetrics, start_metrics_server
    from facerec.server import Health, announce, serve_until_signalled

    metrics = ServiceMetrics("embedder")
    embedder = Embedder.load(settings)
    batcher = EmbeddingBatcher.from_settings(embedder, settings, on_batch=metrics.observe_batch)
    health = Health([SERVICE_NAME])
    if settings.metrics_port:
        metrics.watch_queue(batcher.queue_depth)
        # Outside the token check, so refused calls are counted too.
        interceptors = [metrics.interceptor(), *interceptors]
        start_metrics_server(settings.metrics_port, metrics.registry, settings.host)
    server, port = build_server(settings, batcher, health, interceptors, credentials)
    server.start()
    batcher.warm_up()
    health.set_serving()
    log.info("embedder ready: %s on %s, max batch %d", embedder.name, embedder.runtime, batcher.max_batch)
    announce("embedder", settings.host, port)
    serve_until_signalled(server, health, grace_s=5.0)
    batcher.close()


if __name__ == "__main__":
    main()
