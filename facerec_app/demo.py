"""`facerec demo`, the main job: enroll the 5-celebrity train set, train, identify train and val, print the table."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

import facerec_client
from facerec import assets
from facerec_app import evaluation
from facerec_app.enrolment import enroll_pairs
from facerec_app.rpc import Embedding, GalleryClient, identify_one, largest, read_image
from facerec_app.supervisor import local_services


def run_demo(args: argparse.Namespace) -> int:
    fetched = assets.fetch(assets.facerec_home(os.environ))
    train = assets.labelled_images(fetched.split("train"))
    val = assets.labelled_images(fetched.split("val"))
    with ExitStack() as stack:
        if args.gallery:
            gallery_address, detector, embedder = args.gallery, args.detector, args.embedder
        else:
            sys.stderr.write("starting detector, embedder and gallery (a fresh temporary store)...\n")
            started = time.monotonic()
            addresses = stack.enter_context(local_services())
            sys.stderr.write(f"services serving after {time.monotonic() - started:.1f} s\n")
            gallery_address, detector, embedder = addresses.gallery, addresses.detector, addresses.embedder
        client = GalleryClient(gallery_address)
        stack.callback(client.close)
        started = time.monotonic()
        outcomes = enroll_pairs(client, train, desc="enroll train").outcomes
        enrolled_s = time.monotonic() - started
        trained = client.call(lambda gallery: gallery.train())
        scores = {split: score(client, pairs, split) for split, pairs in (("train", train), ("val", val))}
        embedding = Embedding(detector, embedder)
        stack.callback(embedding.close)
        stats = client.call(lambda gallery: gallery.stats())  # the thresholds the gallery decides with
        threshold = stats.threshold
        verification = verify_pairs(embedding, val, threshold)
    print_table(scores, train, val)
    out = sys.stdout.write
    out(
        f"\nenrolled {outcomes['ENROLLED'] + outcomes['MULTIPLE_FACES']} faces of {len(train)} train pictures "
        f"in {enrolled_s:.1f} s ({outcomes['NO_FACE']} with no face); SVM train accuracy "
        f"{trained.train_accuracy:.1%} over {trained.identities} identities\n"
    )
    out(
        f"verification on {verification['pairs']} val pairs at {operating_point_text(stats)}: "
        f"{verification['accuracy']:.1%} right ({verification['same_right']}/{verification['same']} same, "
        f"{verification['different_right']}/{verification['different']} different)\n"
    )
    return 0


def operating_point_text(stats: facerec_client.Stats) -> str:
    """The gallery's verification point as the demo states it: name, threshold, and its FAR and TAR
    on the set it was calibrated on."""
    point = next((p for p in stats.operating_points if p.name == stats.operating_point), None)
    if point is None:
        return f"threshold {stats.threshold:.3f} ({stats.threshold_source}, no named operating point)"
    return (
        f"{point.name} (threshold {point.threshold:.3f}; on its {point.impostor_pairs} calibration "
        f"different-person pairs FAR {point.far:.2%}, <= {point.far_upper:.2%} at 95%, and TAR "
        f"{point.tar:.1%} of {point.genuine_pairs} same-person pairs)"
    )


def score(client: GalleryClient, pairs: list[tuple[str, Path]], split: str) -> dict[str, list[int]]:
    """identity → [right, faces found, pictures] for the largest face of each picture."""
    from facerec_app.rpc import progress

    table: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    bar = progress(len(pairs), f"identify {split}")
    for identity, path in pairs:
        reply = identify_one(client, path, top_k=1, threshold=0.0)
        row = table[identity]
        row[2] += 1
        if reply.faces:
            row[1] += 1
            row[0] += int(largest(reply.faces).identity == identity)
        bar.update(1)
    bar.close()
    return table


def print_table(
    scores: dict[str, dict[str, list[int]]], train: list[tuple[str, Path]], val: list[tuple[str, Path]]
) -> None:
    out = sys.stdout.write
    out(f"\n{'person':<16} {'train':>14} {'val':>14}\n")
    people = sorted({who for who, _ in train} | {who for who, _ in val})
    totals = {split: [0, 0, 0] for split in scores}
    for person in people:
        cells = []
        for split in ("train", "val"):
            right, found, _ = scores[split][person]
            for i, v in enumerate(scores[split][person]):
                totals[split][i] += v
            cells.append(f"{right}/{found} {right / found if found else 0:6.1%}")
        out(f"{person:<16} {cells[0]:>14} {cells[1]:>14}\n")
    overall = []
    for split in ("train", "val"):
        right, found, _ = totals[split]
        overall.append(f"{right}/{found} {right / found if found else 0:6.1%}")
    out(f"{'overall':<16} {overall[0]:>14} {overall[1]:>14}\n")
    for split in ("train", "val"):
        right, found, pictures = totals[split]
        out(
            f"{split} accuracy: {right / found if found else 0:.1%} ({found} of {pictures} pictures gave a face)\n"
        )


def verify_pairs(embedding: Embedding, pairs: list[tuple[str, Path]], threshold: float) -> dict[str, Any]:
    vectors = embedding.embed_images([read_image(p) for _, p in pairs])
    kept = [(who, v) for (who, _), v in zip(pairs, vectors, strict=True) if v is not None]
    labels = [who for who, _ in kept]
    all_pairs = evaluation.all_pairs(np.stack([v for _, v in kept]), labels)
    match = all_pairs.distance <= threshold
    same = all_pairs.same
    return {
        "pairs": len(match),
        "accuracy": float(np.mean(match == same)),
        "same": int(same.sum()),
        "same_right": int((match & same).sum()),
        "different": int((~same).sum()),
        "different_right": int((~match & ~same).sum()),
    }
