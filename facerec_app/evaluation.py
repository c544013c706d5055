"""Verification metrics over labelled embeddings: pair distances, ROC/DET, EER, TAR@FAR, thresholds. Pure numpy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Pairs:
    """All unordered pairs of a labelled set: distance (euclidean, unit vectors) and whether same person."""

    distance: NDArray[np.float64]  # (p,)
    same: NDArray[np.bool_]  # (p,)
    left: NDArray[np.int64]  # (p,) index of the first item
    right: NDArray[np.int64]  # (p,)


def all_pairs(vectors: NDArray[np.float32], labels: Sequence[str]) -> Pairs:
    """vectors (n, d) unit rows, labels (n,) → every pair i < j."""
    x = np.asarray(vectors, dtype=np.float64)
    gram = np.clip(x @ x.T, -1.0, 1.0)
    left, right = np.triu_indices(len(x), k=1)
    distance = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * gram[left, right]))
    names = np.asarray(labels)
    return Pairs(distance, names[left] == names[right], left.astype(np.int64), right.astype(np.int64))


@dataclass(frozen=True)
class Curve:
    """Operating points at every candidate threshold, ascending: a pair matches when distance <= threshold."""

    threshold: NDArray[np.float64]
    tar: NDArray[np.float64]  # true accepts / same pairs
    far: NDArray[np.float64]  # false accepts / different pairs


def curve(pairs: Pairs) -> Curve:
    """Candidate thresholds are 0, the midpoints between consecutive distinct distances, and 2."""
    d = np.unique(pairs.distance)
    thresholds = np.concatenate([[0.0], (d[:-1] + d[1:]) / 2 if len(d) > 1 else [], [2.0]])
    same = np.sort(pairs.distance[pairs.same])
    diff = np.sort(pairs.distance[~pairs.same])
    tar = np.searchsorted(same, thresholds, side="right") / max(len(same), 1)
    far = np.searchsorted(diff, thresholds, side="right") / max(len(diff), 1)
    return Curve(thresholds, tar, far)


def best_balanced_threshold(c: Curve) -> tuple[float, float]:
    """The threshold with the best balanced accuracy, (TAR + TRR) / 2 — not skewed by 4-to-1 different pairs."""
    balanced = (c.tar + 1.0 - c.far) / 2.0
    i = int(np.argmax(balanced))
    return float(c.threshold[i]), float(balanced[i])


def threshold_at_far(c: Curve, target_far: float) -> tuple[float, float]:
    """The largest threshold whose FAR stays at or below target_far, and the TAR there."""
    ok = np.nonzero(c.far <= target_far)[0]
    i = int(ok[-1]) if len(ok) else 0
    return float(c.threshold[i]), float(c.tar[i])


def equal_error_rate(c: Curve) -> tuple[float, float]:
    """(EER, threshold) where the false-accept rate meets the false-reject rate."""
    frr = 1.0 - c.tar
    i = int(np.argmin(np.abs(c.far - frr)))
    return float((c.far[i] + frr[i]) / 2.0), float(c.threshold[i])


def accuracy_at(pairs: Pairs, threshold: float) -> float:
    """Share of all pairs decided right at threshold."""
    return float(np.mean((pairs.distance <= threshold) == pairs.same))


def balanced_accuracy_at(pairs: Pairs, threshold: float) -> float:
    match = pairs.distance <= threshold
    tar = float(np.mean(match[pairs.same])) if pairs.same.any() else 0.0
    trr = float(np.mean(~match[~pairs.same])) if (~pairs.same).any() else 0.0
    return (tar + trr) / 2.0


def _subset(pairs: Pairs, keep: NDArray[np.bool_]) -> Pairs:
    return Pairs(pairs.distance[keep], pairs.same[keep], pairs.left[keep], pairs.right[keep])


def held_out_by_identity(pairs: Pairs, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """For each identity: the threshold fitted on pairs without it, scored on the pairs with it.

    This says whether a threshold holds on a person it was not fitted to.
    """
    names = np.asarray(labels)
    out = {}
    for who in sorted(set(labels)):
        involved = (names[pairs.left] == who) | (names[pairs.right] == who)
        fitted, _ = best_balanced_threshold(curve(_subset(pairs, ~involved)))
        held = _subset(pairs, involved)
        out[who] = {"threshold": fitted, "balanced_accuracy": balanced_accuracy_at(held, fitted)}
    return out


@dataclass(frozen=True)
class OpenSet:
    """Open-set identification: is a face's nearest enrolled face close enough to name it?

    genuine: for each face, its distance to the nearest *other* face of the same person (what a known
    person's query sees). stranger: its distance to the nearest face of anyone else (what the query
    sees when that person is not enrolled). The nearest of many faces is closer than a typical pair,
    so this threshold sits below the pairwise verification threshold.
    """

    threshold: float
    known_accepted: float  # share of genuine nearest distances <= threshold
    strangers_rejected: float  # share of stranger nearest distances > threshold


def open_set(vectors: NDArray[np.float32], labels: Sequence[str]) -> OpenSet:
    """vectors (n, d) unit rows, labels (n,). Faces of people with a single face count only as strangers."""
    x = np.asarray(vectors, dtype=np.float64)
    d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * np.clip(x @ x.T, -1.0, 1.0)))
    np.fill_diagonal(d, np.inf)
    names = np.asarray(labels)
    same = names[:, None] == names[None, :]
    genuine = np.where(same, d, np.inf).min(axis=1)
    stranger = np.where(same, np.inf, d).min(axis=1)
    genuine = genuine[np.isfinite(genuine)]
    c = curve(
        Pairs(
            np.concatenate([genuine, stranger]),
            np.concatenate([np.ones(len(genuine), bool), np.zeros(len(stranger), bool)]),
            np.zeros(len(genuine) + len(stranger), np.int64),
            np.zeros(len(genuine) + len(stranger), np.int64),
        )
    )
    threshold, _ = best_balanced_threshold(c)
    return OpenSet(threshold, float(np.mean(genuine <= threshold)), float(np.mean(stranger > threshold)))


@dataclass(frozen=True)
class Report:
    """The figures `facerec eval` reports for one alignment mode."""

    images: int
    faces: int
    identities: int
    same_pairs: int
    different_pairs: int
    best_threshold: float
    best_balanced_accuracy: float
    accuracy_at_best: float
    eer: float
    eer_threshold: float
    tar_at_far: dict[str, float]  # "1e-02" → TAR, only where the different pairs allow it
    threshold_at_target_far: float
    target_far: float
    held_out: dict[str, dict[str, float]]
    identification: OpenSet

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def report(
    vectors: NDArray[np.float32], labels: Sequence[str], images: int, target_far: float = 1e-2
) -> tuple[Report, Curve]:
    pairs = all_pairs(vectors, labels)
    c = curve(pairs)
    best, balanced = best_balanced_threshold(c)
    eer, eer_t = equal_error_rate(c)
    different = int((~pairs.same).sum())
    tar_at = {}
    for far in (1e-2, 1e-3):
        if different * far >= 10:  # at least ten false accepts' worth of pairs to estimate a rate
            tar_at[f"{far:.0e}"] = threshold_at_far(c, far)[1]
    target_t, _ = threshold_at_far(c, target_far)
    result = Report(
        images=images,
        faces=len(labels),
        identities=len(set(labels)),
        same_pairs=int(pairs.same.sum()),
        different_pairs=different,
        best_threshold=best,
        best_balanced_accuracy=balanced,
        accuracy_at_best=accuracy_at(pairs, best),
        eer=eer,
        eer_threshold=eer_t,
        tar_at_far=tar_at,
        threshold_at_target_far=target_t,
        target_far=target_far,
        held_out=held_out_by_identity(pairs, labels),
        identification=open_set(vectors, labels),
    )
    return result, c
