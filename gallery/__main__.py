"""`python -m gallery` / `facerec serve gallery`: open the store, build the index, serve.

Health is SERVING once the store and the index are loaded; the detector and the embedder need not
be up. The model is asked of the embedder at start; when it is down, the gallery assumes
DEFAULT_MODEL (or --model) and checks every embedder answer against it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from facerec import security
from facerec.calibration import Calibration, CalibrationSource
from facerec.errors import FacerecError
from facerec.server import Health, announce, serve_until_signalled
from facerec.settings import SettingError
from gallery.clients import DetectorClient, EmbedderClient
from gallery.config import DEFAULT_MODEL, Settings
from gallery.gallery import Gallery
from gallery.service import SERVICE_NAME, WRITE_METHODS, build_server

log = logging.getLogger("gallery")

_HELP = {
    "store": "SQLite file of the gallery (default FACEREC_HOME/gallery.sqlite)",
    "calibration_path": "calibration.json holding the model's threshold (default FACEREC_HOME/calibration.json)",
    "detector": "detector address(es): host:port, dns:///name:port, or a comma list of IP:port",
    "embedder": "embedder address(es), as --detector",
    "model": "the embedding model's name; empty = ask the embedder at start",
    "threshold": "verification threshold in (0, 2]; 0 = calibrated, else 1.20",
    "identification_threshold": "Identify's (open-set) threshold in (0, 2]; 0 = calibrated, else 1.06",
    "svm_max_identities": "above this many identities, identification is nearest-neighbour",
    "ivf_min_size": "faces from which the index is IVF instead of exact",
    "metrics_port": "Prometheus /metrics port; 0 = none",
    "index_checkpoint_s": "save the index this often when the store changed; 0 = only at shutdown",
    "tls_cert": "PEM certificate chain: serve TLS",
    "tls_key": "PEM private key of --tls-cert",
    "tls_client_ca": "require client certificates signed by this CA (mutual TLS)",
    "tokens_file": "`token role` per line (role rw or ro): require a bearer token",
    "tokens": "inline tokens, comma-separated `token role` entries",
    "downstream_tls_ca": "CA to trust for the detector and embedder: call them over TLS",
    "downstream_tls_cert": "this gallery's client certificate for them (mutual TLS)",
    "downstream_tls_key": "the key of --downstream-tls-cert",
    "downstream_token": "bearer token sent to the detector and embedder",
}

_SECRET = {"tokens", "downstream_token"}


def build_parser(defaults: Settings) -> argparse.ArgumentParser:
    """One flag per setting (--svm-max-identities for svm_max_identities), defaulting to GALLERY_* values."""
    parser = argparse.ArgumentParser(prog="gallery", description="The facerec gallery service.")
    for f in dataclasses.fields(Settings):
        flag = "--calibration" if f.name == "calibration_path" else "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kind = Path if isinstance(default, Path) else type(default)
        parser.add_argument(
            flag,
            dest=f.name,
            type=kind,
            default=default,
            # Secrets are not echoed by --help.
            help=_HELP.get(f.name, f.name) + ("" if f.name in _SECRET else " (default %(default)s)"),
        )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    try:
        defaults = Settings.from_env(os.environ)
        args = build_parser(defaults).parse_args(argv)
        verbose = args.verbose
        settings = Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)})
    except SettingError as exc:
        sys.stderr.write(f"gallery: {exc}\n")
        raise SystemExit(2) from None
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        # TLS files and tokens are read now, so a wrong path fails before anything is served.
        auth = security.token_interceptor(settings.tokens_file, settings.tokens, WRITE_METHODS, "GALLERY_")
        credentials = security.server_credentials(settings.tls, "GALLERY_")
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
        )
        embedder = EmbedderClient(
            settings.embedder,
            settings.downstream_timeout_s,
            settings.embed_faces_per_call,
            max_message_bytes=settings.max_message_bytes,
            credentials=downstream,
            token=settings.downstream_token,
        )
    except ValueError as exc:  # SettingError too
        sys.stderr.write(f"gallery: {exc}\n")
        raise SystemExit(2) from None

    model = settings.model or _model_of(embedder)
    # Re-read when the file changes, so `facerec eval --save-threshold` applies without a restart;
    # a threshold given as a setting overrides the calibrated one.
    source = CalibrationSource(settings.calibration_path, model)

    def calibration() -> Calibration:
        current = source.current()
        return dataclasses.replace(
            current,
            threshold=settings.threshold or current.threshold,
            source="override" if settings.threshold else current.source,
            identification_threshold=settings.identification_threshold or current.identification_threshold,
        )

    options = settings.gallery_options(calibration().threshold, calibration().source)
    try:
        gallery = Gallery.open(settings.store, model, detector, embedder, options, calibration)
    except FacerecError as exc:
        sys.stderr.write(f"gallery: {exc}\n")
        raise SystemExit(1) from None

    health = Health([SERVICE_NAME])
    interceptors = []
    if settings.metrics_port:
        from facerec.metrics import ServiceMetrics, start_metrics_server

        metrics = ServiceMetrics("gallery")
        metrics.watch_gallery(lambda: gallery.stats().faces, lambda: gallery.stats().identities)
        interceptors.append(metrics.interceptor())
        start_metrics_server(settings.metrics_port, metrics.registry, settings.host)
    interceptors += auth  # inside metrics, so refused calls are counted too
    server, port = build_server(settings, gallery, health, interceptors, credentials)
    server.start()
    health.set_serving()
    log.info("gallery of %s (threshold %.3f) on port %s", model, gallery.threshold, port)
    announce("gallery", settings.host, port)
    stop_checkpoints = threading.Event()
    if settings.index_checkpoint_s > 0:
        threading.Thread(
            target=_checkpoints,
            args=(gallery, settings.index_checkpoint_s, stop_checkpoints),
            name="index-checkpoint",
            daemon=True,
        ).start()
    try:
        serve_until_signalled(server, health, settings.grace_s)
    finally:
        stop_checkpoints.set()
        gallery.close()
        detector.close()
        embedder.close()


def _checkpoints(gallery: Gallery, interval_s: float, stop: threading.Event) -> None:
    """Saves the index every interval_s while the store changes, until stop is set."""
    while not stop.wait(interval_s):
        if gallery.checkpoint():
            log.info("index saved (%s faces)", gallery.stats().index_size)


def _model_of(embedder: EmbedderClient) -> str:
    try:
        return embedder.model_info(timeout_s=5.0).name or DEFAULT_MODEL
    except FacerecError as exc:
        log.warning("%s Assuming model %s; every embedding will be checked against it.", exc, DEFAULT_MODEL)
        return DEFAULT_MODEL


if __name__ == "__main__":
    main()
