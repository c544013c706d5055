"""`facerec eval`: all same/different pairs of a labelled folder (through the services) or of a running
gallery's enrolled faces; operating points at target FARs with their bounds, EER, a JSON and a PNG."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import ExitStack
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import facerec_client
from facerec import assets, calibration
from facerec.calibration import OperatingPoint
from facerec_app import evaluation
from facerec_app.folders import walk
from facerec_app.rpc import ClientError, Embedding, gallery_client, progress, read_image
from facerec_app.supervisor import DEFAULT_PORTS, local_services

MODES = ("box", "similarity")
GALLERY_MODE = "gallery"  # the report's one "mode" when calibrating on a gallery's enrolled faces


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
    if bool(args.folder) == bool(args.gallery):
        raise ClientError(
            "Give a labelled folder or --gallery HOST:PORT to calibrate on, not both or neither."
        )
    if args.out:
        out_dir = Path(args.out)
    else:
        out_dir = default_out(Path(args.folder), Path.cwd()) if args.folder else Path.cwd() / REPORT_NAME
    if args.gallery:
        model, vectors, labels = gallery_embeddings(args)
        source = f"gallery {args.gallery} collection {args.collection or 'default'}"
        reports = {GALLERY_MODE: evaluation.report(vectors, labels, images=len(labels))}
        chosen = GALLERY_MODE
    else:
        model, reports = folder_reports(args, out_dir)
        source = str(args.folder)
        chosen = choose_alignment({mode: r for mode, (r, _) in reports.items()})
    results = {mode: r for mode, (r, _) in reports.items()}
    report = results[chosen]
    document = {
        "model": model,
        "source": source,
        "chosen_mode": chosen,
        "chosen_by": f"held-out TAR at {evaluation.point_name(evaluation.DEFAULT_TARGET_FAR)}, held-out FAR within it",
        "operating_point": report.operating_point,
        "recommended_threshold": report.point(report.operating_point).threshold,
        "recommended_identification_threshold": report.identification.threshold,
        "modes": {mode: r.as_dict() for mode, r in results.items()},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(document, indent=2))
    plot({mode: c for mode, (_, c) in reports.items()}, results, out_dir / "roc.png")
    out = sys.stdout.write
    for mode, r in results.items():
        out(describe(mode, r))
    if len(results) > 1:
        name = evaluation.point_name(evaluation.DEFAULT_TARGET_FAR)
        held = ", ".join(
            f"{mode} TAR {r.held_out_at_far.tar:.1%} at FAR {r.held_out_at_far.far:.2%}"
            for mode, r in results.items()
        )
        out(f"alignment: {chosen} (identities held out, {name} fitted without each: {held})\n")
    shown = Path(os.path.relpath(out_dir))  # short, and what the user can paste from here
    out(f"report: {shown / 'report.json'}  plot: {shown / 'roc.png'}\n")
    if args.save_threshold and args.gallery:
        out(save_to_collection(args, model, report))
    elif args.save_threshold:
        path = assets.Assets(assets.facerec_home(os.environ)).threshold_file
        default = report.point(report.operating_point)
        calibration.save_calibration(
            path,
            model,
            default.threshold,
            {"source": source, "alignment": chosen},
            identification_threshold=report.identification.threshold,
            points=report.points,
            operating_point=default.name,
            identification=report.identification.point,
        )
        out(
            f"saved thresholds for {model} to {path}: verify {default.threshold:.3f} ({default.name}), "
            f"identify {report.identification.threshold:.3f}\n"
        )
    return 0


def save_to_collection(args: argparse.Namespace, model: str, report: evaluation.Report) -> str:
    """Stores the points in the gallery's collection (SetOperatingPoints): the store holds them, so every
    replica serves them, where a file in this process's FACEREC_HOME would reach none. Says what was saved."""
    default = report.point(report.operating_point)
    points = [_sent(p) for p in report.points]
    identification = _sent(report.identification.point)
    with gallery_client(args.gallery, args.token, args.tls_ca, args.collection) as client:
        stored = client.call(
            lambda gallery: gallery.set_operating_points(
                points, model=model, operating_point=default.name, identification_point=identification
            )
        )
    return (
        f"saved thresholds for {model} to collection {stored.name} of {args.gallery}: verify "
        f"{stored.threshold:.3f} ({stored.operating_point}), identify {stored.identification_threshold:.3f}\n"
    )


def _sent(point: OperatingPoint) -> facerec_client.OperatingPoint:
    # The client's point has the same fields as facerec.calibration's: every one arrives as fitted
    # (tests/facerec_app/test_collections_command.py).
    return facerec_client.OperatingPoint(**asdict(point))


def folder_reports(
    args: argparse.Namespace, out_dir: Path
) -> tuple[str, dict[str, tuple[evaluation.Report, evaluation.Curve]]]:
    """Every picture of the folder embedded in each alignment mode, and each mode's report."""
    folder = Path(args.folder)
    found = walk(folder, skip=out_dir)
    for skipped in found.skipped:
        sys.stderr.write(f"skipped {skipped.path}: {skipped.reason}\n")
    pairs = found.pairs
    identities = sorted({who for who, _ in pairs})
    if len(identities) < 2:
        raise ClientError(
            f"eval needs pictures of at least two identities; {folder} holds "
            f"{', '.join(identities)} (see `facerec eval --help` for which folders count)."
        )
    images = [read_image(p) for _, p in pairs]
    reports = {}
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
        for mode in MODES:
            bar = progress(len(images), f"embed ({mode})")
            vectors = []
            for start in range(0, len(images), 8):
                vectors.extend(embedding.embed_images(images[start : start + 8], alignment=mode))
                bar.update(min(8, len(images) - start))
            bar.close()
            kept = [(who, v) for (who, _), v in zip(pairs, vectors, strict=True) if v is not None]
            reports[mode] = evaluation.report(
                np.stack([v for _, v in kept]), [w for w, _ in kept], images=len(pairs)
            )
    return model, reports


def gallery_embeddings(args: argparse.Namespace) -> tuple[str, NDArray[np.float32], list[str]]:
    """The enrolled faces of a running gallery: (model, vectors (n, d), one identity label per row)."""
    if args.max_faces < 2:
        raise ClientError(f"--max-faces must be at least 2, not {args.max_faces}.")
    vectors: list[list[float]] = []
    labels: list[str] = []
    with gallery_client(args.gallery, args.token, args.tls_ca, args.collection) as client:
        model = client.call(lambda gallery: gallery.stats()).model
        names = [i.name for i in client.call(lambda gallery: gallery.identities())]
        bar = progress(len(names), "read enrolled faces")
        for name in names:
            reply = client.call(partial(facerec_client.Gallery.identity, name=name, include_embeddings=True))
            for face in reply.faces:
                vectors.append(list(face.embedding or ()))
                labels.append(name)
            bar.update(1)
        bar.close()
    if len(set(labels)) < 2:
        raise ClientError(
            f"The gallery at {args.gallery} holds {len(set(labels))} identities; calibrating needs at least two."
        )
    if len(labels) > args.max_faces:
        # Every pair is held in memory (n²/2 of them): a seeded sample keeps a large gallery to a few GB.
        keep = np.sort(np.random.default_rng(7).choice(len(labels), args.max_faces, replace=False))
        sys.stderr.write(
            f"calibrating on {args.max_faces} of {len(labels)} enrolled faces, drawn at random\n"
        )
        return model, np.asarray(vectors, dtype=np.float32)[keep], [labels[i] for i in keep]
    return model, np.asarray(vectors, dtype=np.float32), labels


def choose_alignment(results: dict[str, evaluation.Report]) -> str:
    """The mode with the highest held-out TAR at the default target FAR among those whose held-out FAR
    stays within that target (a TAR bought with more false accepts than the target is not "at" it);
    if none does, the one with the lowest held-out FAR. The box crop (the tutorial's) wins ties."""
    target = evaluation.DEFAULT_TARGET_FAR

    def rank(mode: str) -> tuple[bool, float, bool]:
        held = results[mode].held_out_at_far
        within = held.genuine > 0 and held.far <= target
        return within, held.tar if within else -held.far, mode == "box"

    return max(results, key=rank)


def describe(mode: str, r: evaluation.Report) -> str:
    """The report of one mode as the lines `facerec eval` prints."""
    pad = " " * 11
    lines = [
        f"{mode:<10} {r.faces} faces of {r.identities} people: {r.same_pairs} same / "
        f"{r.different_pairs} different pairs; EER {r.eer:.1%}"
    ]
    for p in r.points:
        mark = "  <- default" if p.name == r.operating_point else ""
        lines.append(f"{pad}{point_line(p)}{mark}")
    for u in r.unsupported:
        lines.append(f"{pad}{u.name:<14} {u.reason}")
    held = r.held_out_at_far
    balanced = np.mean([float(v["balanced_accuracy"] or 0) for v in r.held_out.values()])
    name = evaluation.point_name(held.target_far)
    skipped = f"; too few pairs without {', '.join(held.unsupported)}" if held.unsupported else ""
    if held.genuine:
        lines.append(
            f"{pad}held out by identity: TAR {held.tar:.1%} at {name} "
            f"(FAR {held.far:.2%} over {held.impostors} pairs{skipped}); best-balanced {balanced:.1%}"
        )
    else:
        lines.append(
            f"{pad}held out by identity: {name} cannot be fitted without any one person (too few "
            f"different-person pairs left); best-balanced {balanced:.1%}"
        )
    i = r.identification
    lines.append(
        f"{pad}open-set identification: threshold {i.threshold:.3f} ({i.chosen_by}) accepts "
        f"{i.known_accepted:.1%} of known faces, rejects {i.strangers_rejected:.1%} of "
        f"{i.point.impostor_pairs} strangers (accept <= {i.point.far_upper:.1%} at 95%)"
    )
    lines += [f"{pad}note: {n}" for n in r.notes]
    return "\n".join(lines) + "\n"


def point_line(p: OperatingPoint) -> str:
    return (
        f"{p.name:<14} threshold {p.threshold:.3f}  FAR {p.far:.3%} (<= {p.far_upper:.3%} at 95%)  "
        f"TAR {p.tar:.1%}"
    )


def plot(curves: dict[str, evaluation.Curve], results: dict[str, evaluation.Report], path: Path) -> None:
    """ROC (log FAR) and DET on normal-deviate axes, with each mode's operating points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    fig, (roc, det) = plt.subplots(1, 2, figsize=(12, 5))
    ticks = np.array([1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5])
    for n, (mode, c) in enumerate(curves.items()):
        r = results[mode]
        # A rate of 0 has no normal deviate (-inf); draw it at half a pair, the resolution of the set.
        far_floor, frr_floor = 0.5 / max(r.different_pairs, 1), 0.5 / max(r.same_pairs, 1)
        far = np.clip(c.far, far_floor, 1 - far_floor)
        frr = np.clip(1 - c.tar, frr_floor, 1 - frr_floor)
        label = f"{mode}: {r.same_pairs} same / {r.different_pairs} different pairs"
        (line,) = roc.plot(far, c.tar, label=label)
        det.plot(norm.ppf(far), norm.ppf(frr), color=line.get_color(), label=label)
        for p in r.points:
            if p.name in ("best_accuracy",):
                continue
            x = min(max(p.far, far_floor), 1 - far_floor)
            y = min(max(1 - p.tar, frr_floor), 1 - frr_floor)
            marker = "*" if p.name == r.operating_point else "o"
            roc.plot([x], [p.tar], marker, color=line.get_color(), markersize=9 if marker == "*" else 5)
            det.plot(
                [norm.ppf(x)],
                [norm.ppf(y)],
                marker,
                color=line.get_color(),
                markersize=9 if marker == "*" else 5,
            )
            det.annotate(
                f"{p.name} {p.threshold:.3f}",
                (norm.ppf(x), norm.ppf(y)),
                textcoords="offset points",
                # one mode's labels above-right of its marks, the other's below-left, so they don't overlap
                xytext=(6, 4) if n % 2 == 0 else (-6, -10),
                ha="left" if n % 2 == 0 else "right",
                fontsize=7,
                color=line.get_color(),
            )
    roc.set(xscale="log", xlabel="false accept rate", ylabel="true accept rate", title="ROC")
    det.set(xlabel="false accept rate", ylabel="false reject rate", title="DET (normal-deviate axes)")
    # From just below the set's resolution (half a pair) to 60%: beyond, rates say nothing here.
    far_low = 0.5 / max(max(r.different_pairs for r in results.values()), 1)
    frr_low = 0.5 / max(max(r.same_pairs for r in results.values()), 1)
    det.set_xlim(norm.ppf(far_low / 1.5), norm.ppf(0.6))
    det.set_ylim(norm.ppf(frr_low / 1.5), norm.ppf(0.6))
    det.set_xticks(norm.ppf(ticks[ticks >= far_low]), [f"{t:g}" for t in ticks[ticks >= far_low]])
    det.set_yticks(norm.ppf(ticks[ticks >= frr_low]), [f"{t:g}" for t in ticks[ticks >= frr_low]])
    for ax in (roc, det):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if ax is roc else "upper right")
    fig.suptitle("* default operating point, o other points (far_1e-N, eer)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
