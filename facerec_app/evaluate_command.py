"""`facerec eval DIR`: all same/different pairs through the services, ROC/DET, EER, thresholds, a JSON and a PNG."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from facerec import assets, calibration
from facerec_app import evaluation
from facerec_app.folders import labelled_set
from facerec_app.rpc import ClientError, Embedding, progress, read_image
from facerec_app.supervisor import DEFAULT_PORTS, local_services

MODES = ("box", "similarity")


REPORT_NAME = "eval-report"


def default_out(folder: Path, cwd: Path) -> Path:
    """eval-report in the current folder, unless that lies inside the data folder (a later eval would
    read the report as data): then eval-report beside the data folder."""
    data = folder.resolve()
    here = cwd.resolve()
    if here == data or data in here.parents:
        return data.parent / f"{data.name}-{REPORT_NAME}"
    return here / REPORT_NAME


def running_services(detector: str | None, embedder: str | None) -> tuple[str, str]:
    """The detector and embedder to use: those given, else those of a running `facerec serve`
    (FACEREC_DETECTOR / FACEREC_EMBEDDER or the default ports) when both answer; ("", "") for none."""
    if detector and embedder:
        return detector, embedder
    from facerec_app.health_check import check

    candidates = (
        detector or os.environ.get("FACEREC_DETECTOR") or f"127.0.0.1:{DEFAULT_PORTS['detector']}",
        embedder or os.environ.get("FACEREC_EMBEDDER") or f"127.0.0.1:{DEFAULT_PORTS['embedder']}",
    )
    if all(check(address, timeout_s=2.0)[0] for address in candidates):
        return candidates
    return "", ""


def run_eval(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    out_dir = Path(args.out) if args.out else default_out(folder, Path.cwd())
    pairs = labelled_set(folder, skip=out_dir)
    identities = sorted({who for who, _ in pairs})
    if len(identities) < 2:
        raise ClientError(
            f"eval needs pictures of at least two identities; {folder} holds "
            f"{', '.join(identities)} (see `facerec eval --help` for which folders count)."
        )
    images = [read_image(p) for _, p in pairs]
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        detector, embedder = running_services(args.detector, args.embedder)
        if detector and embedder:
            sys.stderr.write(f"using the running detector at {detector} and embedder at {embedder}\n")
        else:
            sys.stderr.write("no detector and embedder running; starting them...\n")
            addresses = stack.enter_context(local_services())
            detector, embedder = addresses.detector, addresses.embedder
        embedding = Embedding(detector, embedder)
        stack.callback(embedding.close)
        model = embedding.model_info().name
        results, curves = {}, {}
        for mode in MODES:
            bar = progress(len(images), f"embed ({mode})")
            vectors = []
            for start in range(0, len(images), 8):
                vectors.extend(embedding.embed_images(images[start : start + 8], alignment=mode))
                bar.update(min(8, len(images) - start))
            bar.close()
            kept = [(who, v) for (who, _), v in zip(pairs, vectors, strict=True) if v is not None]
            report, curve = evaluation.report(
                np.stack([v for _, v in kept]),
                [w for w, _ in kept],
                images=len(pairs),
                target_far=args.target_far,
            )
            results[mode], curves[mode] = report, curve
    chosen = results["box"]  # the gallery's default alignment (the tutorial's crop)
    document = {
        "model": model,
        "folder": str(args.folder),
        "recommended_threshold": chosen.best_threshold,
        "recommended_from": "best balanced accuracy, box alignment",
        "recommended_identification_threshold": chosen.identification.threshold,
        "modes": {mode: r.as_dict() for mode, r in results.items()},
    }
    (out_dir / "report.json").write_text(json.dumps(document, indent=2))
    plot(curves, results, out_dir / "roc.png")
    out = sys.stdout.write
    for mode, r in results.items():
        held = np.mean([v["balanced_accuracy"] for v in r.held_out.values()])
        tar = (
            ", ".join(f"TAR {v:.1%} at FAR {k}" for k, v in r.tar_at_far.items())
            or "too few pairs for TAR@FAR"
        )
        out(
            f"{mode:<10} {r.faces} faces, {r.same_pairs} same / {r.different_pairs} different pairs: "
            f"best threshold {r.best_threshold:.3f} (balanced accuracy {r.best_balanced_accuracy:.1%}, "
            f"accuracy {r.accuracy_at_best:.1%}), EER {r.eer:.1%}, {tar}; "
            f"held-out by identity {held:.1%}\n"
            f"{'':<10} open-set identification: threshold {r.identification.threshold:.3f} accepts "
            f"{r.identification.known_accepted:.1%} of known faces, rejects "
            f"{r.identification.strangers_rejected:.1%} of strangers\n"
        )
    shown = Path(os.path.relpath(out_dir))  # short, and what the user can paste from here
    out(f"report: {shown / 'report.json'}  plot: {shown / 'roc.png'}\n")
    if args.save_threshold:
        path = assets.Assets(assets.facerec_home(os.environ)).threshold_file
        calibration.save_calibration(
            path,
            model,
            chosen.best_threshold,
            {"source": str(args.folder), "balanced_accuracy": chosen.best_balanced_accuracy},
            identification_threshold=chosen.identification.threshold,
        )
        out(
            f"saved thresholds for {model} to {path}: verify {chosen.best_threshold:.3f}, "
            f"identify {chosen.identification.threshold:.3f}\n"
        )
    return 0


def plot(curves: dict[str, evaluation.Curve], results: dict[str, evaluation.Report], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (roc, det) = plt.subplots(1, 2, figsize=(11, 4.5))
    for mode, c in curves.items():
        floor = 1.0 / max(results[mode].different_pairs, 1)
        roc.plot(np.maximum(c.far, floor), c.tar, label=f"{mode} (EER {results[mode].eer:.1%})")
        det.plot(np.maximum(c.far, floor), np.maximum(1 - c.tar, floor), label=mode)
    roc.set(xscale="log", xlabel="false accept rate", ylabel="true accept rate", title="ROC")
    det.set(xscale="log", yscale="log", xlabel="false accept rate", ylabel="false reject rate", title="DET")
    for ax in (roc, det):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
