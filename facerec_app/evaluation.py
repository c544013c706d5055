"""Verification metrics over labelled embeddings: pair distances, ROC/DET, EER, operating points at a
target false-accept rate with Clopper–Pearson bounds, held-out checks. Pure numpy (and scipy's beta)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import beta

from facerec.calibration import IDENTIFICATION, OperatingPoint
from facerec.errors import Precondition

CONFIDENCE = 0.95
FAR_TARGETS = (1e-2, 1e-3, 1e-4)
# The criterion for the default verification point and the alignment mode.
DEFAULT_TARGET_FAR = 1e-3
# Below this distance two embeddings are of one picture: float32 unit vectors, compared through their
# dot product, leave up to ~5e-4 of rounding where the true distance is 0. No real threshold sits there.
SAME_PICTURE_DISTANCE = 1e-3


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


def far_upper_bound(false_accepts: int, impostors: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper–Pearson upper bound of a false-accept rate seen as false_accepts of impostors.

    With no false accepts it is 1 - (1 - confidence)^(1/impostors), about 3/impostors at 95%.
    """
    if impostors <= 0 or false_accepts >= impostors:
        return 1.0
    return float(beta.ppf(confidence, false_accepts + 1, impostors - false_accepts))


def impostors_needed(target_far: float, confidence: float = CONFIDENCE) -> int:
    """The fewest impostor pairs whose upper bound can reach target_far at all (with no false accept)."""
    return math.ceil(math.log(1.0 - confidence) / math.log1p(-target_far))


def point_name(target_far: float) -> str:
    """far_1e-3 for 0.001: the name requests and calibration.json use."""
    mantissa, exponent = f"{target_far:.0e}".split("e")
    return f"far_{mantissa}e{int(exponent)}"


@dataclass(frozen=True)
class Unsupported:
    """A target the pairs cannot support: too few impostor pairs to bound the FAR below it even with no
    false accept, or impostor pairs so close (at distance 0: one picture under two names) that only a
    threshold of 0, or none, keeps the FAR there. reason says which, in one sentence."""

    name: str
    target_far: float
    impostor_pairs: int
    needed: int
    reason: str = ""


def point_at(pairs: Pairs, threshold: float, name: str) -> OperatingPoint:
    """What a given threshold does on the pairs."""
    match = pairs.distance <= threshold
    impostors = int((~pairs.same).sum())
    genuine = int(pairs.same.sum())
    false_accepts = int((match & ~pairs.same).sum())
    return OperatingPoint(
        name=name,
        threshold=float(threshold),
        far=false_accepts / max(impostors, 1),
        far_upper=far_upper_bound(false_accepts, impostors),
        tar=float((match & pairs.same).sum()) / max(genuine, 1),
        genuine_pairs=genuine,
        impostor_pairs=impostors,
    )


def fit_at_far(pairs: Pairs, target_far: float, name: str = "") -> OperatingPoint | Unsupported:
    """The largest threshold whose FAR upper bound stays at or below target_far, or Unsupported.

    The bound grows with the false accepts k, so the answer admits the most k whose bound is within
    the target, and sits halfway between the distance below the (k+1)-th impostor distance and it.
    """
    name = name or point_name(target_far)
    impostor = np.sort(pairs.distance[~pairs.same])
    n = len(impostor)
    needed = impostors_needed(target_far)
    if n < needed:
        return Unsupported(
            name,
            target_far,
            n,
            needed,
            f"too few different-person pairs: {n}, {needed} needed to bound the FAR at {target_far:.0e}",
        )
    lo, hi = 0, n  # far_upper_bound(lo, n) <= target_far holds; find the largest such k
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if far_upper_bound(mid, n) <= target_far:
            lo = mid
        else:
            hi = mid - 1
    if lo >= n:
        return point_at(pairs, 2.0, name)
    c = curve(pairs)
    counts = np.searchsorted(impostor, c.threshold, side="right")
    within = np.nonzero(counts <= lo)[0]
    # Impostor pairs at distance 0 are accepted by every threshold; when they alone exceed the false
    # accepts the target allows, no threshold fits; and a threshold of 0 accepts identical pictures only.
    if not len(within) or c.threshold[within[-1]] < SAME_PICTURE_DISTANCE:
        zeros = int(np.searchsorted(impostor, SAME_PICTURE_DISTANCE, side="left"))
        if zeros:
            are = "pair is" if zeros == 1 else "pairs are"
            reason = (
                f"{zeros} different-person {are} at distance 0 (the same picture under two names), and a "
                f"FAR of {target_far:.0e} over {n} pairs allows {lo} false accept{'' if lo == 1 else 's'}"
            )
        else:
            reason = (
                f"the nearest different-person pair ({impostor[0]:.3f}) is nearer than any same-person "
                f"pair: only a threshold of 0 keeps the FAR at {target_far:.0e}"
            )
        return Unsupported(name, target_far, n, needed, reason)
    return point_at(pairs, float(c.threshold[within[-1]]), name)


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


def held_out_by_identity(
    pairs: Pairs, labels: Sequence[str], target_far: float = DEFAULT_TARGET_FAR, max_folds: int = 10
) -> dict[str, dict[str, float | int | None]]:
    """For each identity (or, beyond max_folds identities, each of max_folds groups of them): thresholds
    fitted on pairs without it, scored on the pairs with it.

    This says whether a threshold holds on people it was not fitted to: the best balanced one
    (balanced_accuracy) and the one at target_far by its bound (accepted of genuine pairs, false
    accepts of impostor pairs; None where the remaining impostor pairs cannot support the target).
    Groups keep a gallery of thousands of people to max_folds fits instead of one per person.
    """
    names = np.asarray(labels)
    people = sorted(set(labels))
    if len(people) <= max_folds:
        folds = {who: [who] for who in people}
    else:
        folds = {
            f"fold {i + 1} of {max_folds} ({len(people[i::max_folds])} identities)": people[i::max_folds]
            for i in range(max_folds)
        }
    out: dict[str, dict[str, float | int | None]] = {}
    for who, group in folds.items():
        involved = np.isin(names[pairs.left], group) | np.isin(names[pairs.right], group)
        rest = _subset(pairs, ~involved)
        fitted, _ = best_balanced_threshold(curve(rest))
        held = _subset(pairs, involved)
        at_far = fit_at_far(rest, target_far)
        row: dict[str, float | int | None] = {
            "threshold": fitted,
            "balanced_accuracy": balanced_accuracy_at(held, fitted),
            "far_threshold": None,
            "genuine": int(held.same.sum()),
            "impostors": int((~held.same).sum()),
            "accepted": None,
            "false_accepts": None,
        }
        if isinstance(at_far, OperatingPoint):
            match = held.distance <= at_far.threshold
            row["far_threshold"] = at_far.threshold
            row["accepted"] = int((match & held.same).sum())
            row["false_accepts"] = int((match & ~held.same).sum())
        out[who] = row
    return out


@dataclass(frozen=True)
class HeldOut:
    """TAR and FAR at target_far pooled over identities, each scored by a threshold fitted without it."""

    target_far: float
    tar: float
    far: float
    genuine: int  # genuine pairs of the identities whose fit was supported
    impostors: int
    unsupported: list[str]  # identities whose remaining impostor pairs could not support the target


def pooled_held_out(held_out: dict[str, dict[str, float | int | None]], target_far: float) -> HeldOut:
    scored = {who: row for who, row in held_out.items() if row["accepted"] is not None}
    genuine = sum(int(row["genuine"] or 0) for row in scored.values())
    impostors = sum(int(row["impostors"] or 0) for row in scored.values())
    accepted = sum(int(row["accepted"] or 0) for row in scored.values())
    false_accepts = sum(int(row["false_accepts"] or 0) for row in scored.values())
    return HeldOut(
        target_far,
        accepted / genuine if genuine else 0.0,
        false_accepts / impostors if impostors else 0.0,
        genuine,
        impostors,
        sorted(set(held_out) - set(scored)),
    )


@dataclass(frozen=True)
class OpenSet:
    """Open-set identification: is a face's nearest enrolled face close enough to name it?

    genuine: for each face, its distance to the nearest *other* face of the same person (what a known
    person's query sees). stranger: its distance to the nearest face of anyone else (what the query
    sees when that person is not enrolled: the person is held out). The nearest of many faces is closer
    than a typical pair, so this threshold sits below the pairwise verification threshold. It is fitted
    at DEFAULT_TARGET_FAR by its bound when the strangers support it, else at the best balanced split.
    """

    threshold: float
    known_accepted: float  # share of genuine nearest distances <= threshold
    strangers_rejected: float  # share of stranger nearest distances > threshold
    chosen_by: str  # "far_1e-3" or "best balanced split (too few strangers for far_1e-3)"
    point: OperatingPoint  # the same, as a point: far = strangers accepted, with its bound


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
    nearest = Pairs(
        np.concatenate([genuine, stranger]),
        np.concatenate([np.ones(len(genuine), bool), np.zeros(len(stranger), bool)]),
        np.zeros(len(genuine) + len(stranger), np.int64),
        np.zeros(len(genuine) + len(stranger), np.int64),
    )
    fitted = fit_at_far(nearest, DEFAULT_TARGET_FAR, IDENTIFICATION)
    if isinstance(fitted, OperatingPoint):
        point, chosen_by = fitted, point_name(DEFAULT_TARGET_FAR)
    else:
        threshold, _ = best_balanced_threshold(curve(nearest))
        point = point_at(nearest, threshold, IDENTIFICATION)
        chosen_by = (
            f"best balanced split: {len(stranger)} strangers, {fitted.needed} needed for "
            f"{point_name(DEFAULT_TARGET_FAR)}"
        )
    return OpenSet(
        point.threshold,
        float(np.mean(genuine <= point.threshold)) if len(genuine) else 0.0,
        float(np.mean(stranger > point.threshold)),
        chosen_by,
        point,
    )


@dataclass(frozen=True)
class Report:
    """The figures `facerec eval` reports for one alignment mode (or one gallery)."""

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
    points: list[OperatingPoint]  # far_1e-2, far_1e-3, ... where supported, then eer, best_accuracy
    unsupported: list[Unsupported]  # FAR targets the impostor pairs cannot support
    operating_point: str  # the default: far_1e-3, else the strictest supported target, else best_accuracy
    held_out: dict[str, dict[str, float | int | None]]
    held_out_at_far: HeldOut
    identification: OpenSet
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def point(self, name: str) -> OperatingPoint:
        return next(p for p in self.points if p.name == name)


def default_point(points: Sequence[OperatingPoint]) -> str:
    """DEFAULT_TARGET_FAR's point when supported, else the strictest supported FAR point, else best accuracy."""
    names = {p.name for p in points}
    if point_name(DEFAULT_TARGET_FAR) in names:
        return point_name(DEFAULT_TARGET_FAR)
    for target in sorted(FAR_TARGETS):
        if point_name(target) in names:
            return point_name(target)
    return "best_accuracy"


def report(vectors: NDArray[np.float32], labels: Sequence[str], images: int) -> tuple[Report, Curve]:
    """The figures of one labelled set. Precondition when its pairs are all of one kind: no threshold
    can be told from them (every threshold would accept all pairs, or none that matter)."""
    pairs = all_pairs(vectors, labels)
    people = len(set(labels))
    if not pairs.same.any():
        raise Precondition(
            f"The {len(labels)} faces hold no two of one person ({people} identities of one face each): "
            "a threshold needs same-person pairs too; give some people two faces or more."
        )
    if pairs.same.all():
        raise Precondition(
            f"The {len(labels)} faces are all of one person: a threshold needs different-person pairs "
            "too; give faces of two people or more."
        )
    c = curve(pairs)
    best, balanced = best_balanced_threshold(c)
    eer, eer_t = equal_error_rate(c)
    points: list[OperatingPoint] = []
    unsupported: list[Unsupported] = []
    for target in FAR_TARGETS:
        fitted = fit_at_far(pairs, target)
        if isinstance(fitted, OperatingPoint):
            points.append(fitted)
        else:
            unsupported.append(fitted)
    points += [point_at(pairs, eer_t, "eer"), point_at(pairs, best, "best_accuracy")]
    chosen = default_point(points)
    notes = []
    twins = np.nonzero(~pairs.same & (pairs.distance < SAME_PICTURE_DISTANCE))[0]
    if len(twins):
        names = np.asarray(labels)
        shown = ", ".join(
            f"{str(names[pairs.left[i]])!r} and {str(names[pairs.right[i]])!r}" for i in twins[:3]
        )
        more = f" and {len(twins) - 3} more" if len(twins) > 3 else ""
        are = "pair is" if len(twins) == 1 else "pairs are"
        notes.append(
            f"{len(twins)} different-person {are} at distance 0, the same picture under two names "
            f"({shown}{more}): a false accept at every threshold; remove the wrong name"
        )
    if chosen != point_name(DEFAULT_TARGET_FAR):
        notes.append(
            f"too few different-person pairs for {point_name(DEFAULT_TARGET_FAR)}; the default is {chosen}"
        )
    held = held_out_by_identity(pairs, labels)
    result = Report(
        images=images,
        faces=len(labels),
        identities=len(set(labels)),
        same_pairs=int(pairs.same.sum()),
        different_pairs=int((~pairs.same).sum()),
        best_threshold=best,
        best_balanced_accuracy=balanced,
        accuracy_at_best=accuracy_at(pairs, best),
        eer=eer,
        eer_threshold=eer_t,
        points=points,
        unsupported=unsupported,
        operating_point=chosen,
        held_out=held,
        held_out_at_far=pooled_held_out(held, DEFAULT_TARGET_FAR),
        identification=open_set(vectors, labels),
        notes=notes,
    )
    return result, c
