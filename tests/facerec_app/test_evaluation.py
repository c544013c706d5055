"""Verification metrics checked against brute force on seeded synthetic embeddings."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from facerec.calibration import OperatingPoint
from facerec.errors import Precondition
from facerec_app import evaluation


def clusters(n_people: int = 5, per: int = 8, spread: float = 0.25, seed: int = 7):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, 128))
    x = np.repeat(centres, per, axis=0) / np.sqrt(128) + rng.normal(
        scale=spread / np.sqrt(128), size=(n_people * per, 128)
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = [f"p{i}" for i in range(n_people) for _ in range(per)]
    return x.astype(np.float32), labels


def test_pairs_match_brute_force() -> None:
    x, labels = clusters()
    pairs = evaluation.all_pairs(x, labels)
    n = len(labels)
    assert len(pairs.distance) == n * (n - 1) // 2
    for k in range(0, len(pairs.distance), 97):
        i, j = pairs.left[k], pairs.right[k]
        assert abs(pairs.distance[k] - np.linalg.norm(x[i] - x[j])) < 1e-5
        assert pairs.same[k] == (labels[i] == labels[j])


def test_best_threshold_separates_separable_clusters() -> None:
    x, labels = clusters(spread=0.2)
    result, c = evaluation.report(x, labels, images=len(labels))
    assert result.best_balanced_accuracy == 1.0
    assert result.accuracy_at_best == 1.0
    assert 0 < result.best_threshold < 2
    assert result.eer == 0.0
    pairs = evaluation.all_pairs(x, labels)
    assert pairs.distance[pairs.same].max() <= result.best_threshold < pairs.distance[~pairs.same].min()
    assert all(v["balanced_accuracy"] == 1.0 for v in result.held_out.values())
    assert np.all(np.diff(c.far) >= 0) and np.all(np.diff(c.tar) >= 0)


def test_far_upper_bound_is_clopper_pearson() -> None:
    # With no false accept the bound has a closed form: 1 - 0.05^(1/n), about 3/n.
    for n in (10, 299, 5453):
        assert evaluation.far_upper_bound(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
    # The published one-sided 95% limit for 1 of 10 is 0.3942; in general the bound p is where seeing
    # at most k false accepts of n has probability 5% (the binomial tail, summed here by hand).
    assert evaluation.far_upper_bound(1, 10) == pytest.approx(0.3942, abs=1e-4)
    for k, n in ((5, 100), (1, 5453), (40, 5453)):
        p = evaluation.far_upper_bound(k, n)
        tail = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))
        assert tail == pytest.approx(0.05, abs=1e-9)
    assert evaluation.far_upper_bound(10, 10) == 1.0
    assert evaluation.far_upper_bound(0, 0) == 1.0
    bounds = [evaluation.far_upper_bound(k, 1000) for k in range(20)]
    assert all(a < b for a, b in zip(bounds, bounds[1:], strict=False))


def test_impostors_needed_is_the_fewest_pairs_whose_bound_can_reach_the_target() -> None:
    assert [evaluation.impostors_needed(f) for f in (1e-2, 1e-3, 1e-4)] == [299, 2995, 29956]
    for target in (1e-2, 1e-3, 1e-4):
        n = evaluation.impostors_needed(target)
        assert evaluation.far_upper_bound(0, n) <= target < evaluation.far_upper_bound(0, n - 1)
    assert [evaluation.point_name(f) for f in (1e-2, 1e-3, 1e-4, 0.05)] == [
        "far_1e-2",
        "far_1e-3",
        "far_1e-4",
        "far_5e-2",
    ]


def synthetic_pairs(impostors: int, genuine: int, seed: int = 7) -> evaluation.Pairs:
    rng = np.random.default_rng(seed)
    distance = np.concatenate([rng.uniform(0.2, 1.3, genuine), rng.uniform(0.9, 2.0, impostors)])
    same = np.concatenate([np.ones(genuine, bool), np.zeros(impostors, bool)])
    order = rng.permutation(len(distance))
    zeros = np.zeros(len(distance), np.int64)
    return evaluation.Pairs(distance[order], same[order], zeros, zeros)


def test_fit_at_far_admits_the_most_false_accepts_whose_bound_meets_the_target() -> None:
    pairs = synthetic_pairs(impostors=10_000, genuine=500)
    impostor = np.sort(pairs.distance[~pairs.same])
    genuine = pairs.distance[pairs.same]
    point = evaluation.fit_at_far(pairs, 1e-3)
    assert isinstance(point, OperatingPoint) and point.name == "far_1e-3"
    # Known answer: of 10 000 impostor pairs, 4 false accepts bound the FAR at 9.15e-4, 5 at 1.05e-3.
    assert evaluation.far_upper_bound(4, 10_000) <= 1e-3 < evaluation.far_upper_bound(5, 10_000)
    assert impostor[3] < point.threshold < impostor[4]
    below = pairs.distance[pairs.distance < impostor[4]].max()
    assert point.threshold == pytest.approx((below + impostor[4]) / 2)
    assert point.far == pytest.approx(4 / 10_000)
    assert point.far_upper == pytest.approx(evaluation.far_upper_bound(4, 10_000))
    assert point.tar == pytest.approx(np.mean(genuine <= point.threshold))
    assert (point.genuine_pairs, point.impostor_pairs) == (500, 10_000)
    looser = evaluation.fit_at_far(pairs, 1e-2)
    assert isinstance(looser, OperatingPoint)
    assert looser.threshold > point.threshold and looser.tar >= point.tar
    assert looser.far_upper <= 1e-2 < evaluation.far_upper_bound(round(looser.far * 10_000) + 1, 10_000)


def test_too_few_impostor_pairs_give_no_number_for_the_target() -> None:
    pairs = synthetic_pairs(impostors=2994, genuine=100)
    fitted = evaluation.fit_at_far(pairs, 1e-3)
    assert isinstance(fitted, evaluation.Unsupported)
    assert (fitted.name, fitted.impostor_pairs, fitted.needed) == ("far_1e-3", 2994, 2995)
    assert isinstance(
        evaluation.fit_at_far(synthetic_pairs(impostors=2995, genuine=100), 1e-3), OperatingPoint
    )


def test_report_lists_supported_points_and_defaults_to_the_strictest_supported() -> None:
    # 10 people x 6 faces: 1620 different pairs support 1e-2 (299 needed), not 1e-3 (2995) or 1e-4.
    x, labels = clusters(n_people=10, per=6, spread=1.2)
    result, _ = evaluation.report(x, labels, images=len(labels))
    assert [p.name for p in result.points] == ["far_1e-2", "eer", "best_accuracy"]
    assert [(u.name, u.impostor_pairs, u.needed) for u in result.unsupported] == [
        ("far_1e-3", 1620, 2995),
        ("far_1e-4", 1620, 29956),
    ]
    assert result.operating_point == "far_1e-2" and "far_1e-3" in result.notes[0]
    pairs = evaluation.all_pairs(x, labels)
    at = result.point("far_1e-2")
    false_accepts = int(np.sum(pairs.distance[~pairs.same] <= at.threshold))
    assert at.far == false_accepts / 1620 and at.far_upper <= 1e-2
    best = result.point("best_accuracy")
    assert best.threshold == result.best_threshold
    # Too few even for 1e-2: the default is the best-accuracy point, and the report says so.
    x, labels = clusters(n_people=3, per=5)
    small, _ = evaluation.report(x, labels, images=len(labels))
    assert small.operating_point == "best_accuracy" and not any(
        p.name.startswith("far_") for p in small.points
    )


def test_held_out_scores_each_identity_with_a_threshold_fitted_without_it() -> None:
    x, labels = clusters(n_people=12, per=6, spread=1.0)
    pairs = evaluation.all_pairs(x, labels)
    held = evaluation.held_out_by_identity(pairs, labels, target_far=1e-2, max_folds=12)
    names = np.asarray(labels)
    for who, row in held.items():
        involved = (names[pairs.left] == who) | (names[pairs.right] == who)
        rest = evaluation.Pairs(
            pairs.distance[~involved], pairs.same[~involved], pairs.left[~involved], pairs.right[~involved]
        )
        fitted = evaluation.fit_at_far(rest, 1e-2)
        assert isinstance(fitted, OperatingPoint) and row["far_threshold"] == fitted.threshold
        match = pairs.distance[involved] <= fitted.threshold
        assert row["accepted"] == int(np.sum(match & pairs.same[involved]))
        assert row["false_accepts"] == int(np.sum(match & ~pairs.same[involved]))
    pooled = evaluation.pooled_held_out(held, 1e-2)
    assert pooled.genuine == int(pairs.same.sum()) and pooled.unsupported == []
    assert pooled.tar == sum(int(r["accepted"] or 0) for r in held.values()) / pooled.genuine


def test_beyond_max_folds_identities_are_held_out_in_groups() -> None:
    x, labels = clusters(n_people=25, per=3, spread=1.0)
    pairs = evaluation.all_pairs(x, labels)
    held = evaluation.held_out_by_identity(pairs, labels, target_far=1e-2, max_folds=5)
    assert list(held) == [f"fold {i} of 5 (5 identities)" for i in range(1, 6)]
    # Every genuine pair lies in exactly one group; an impostor pair in one group or two.
    assert sum(int(r["genuine"] or 0) for r in held.values()) == int(pairs.same.sum())
    impostors = sum(int(r["impostors"] or 0) for r in held.values())
    assert int((~pairs.same).sum()) < impostors < 2 * int((~pairs.same).sum())


def test_open_set_threshold_matches_brute_force_nearest_distances() -> None:
    x, labels = clusters(n_people=6, per=5, spread=0.6)
    result = evaluation.open_set(x, labels)
    names = np.asarray(labels)
    genuine, stranger = [], []
    for i in range(len(x)):
        d = np.linalg.norm(x - x[i], axis=1)
        d[i] = np.inf
        genuine.append(d[names == names[i]].min())
        stranger.append(d[names != names[i]].min())
    genuine, stranger = np.array(genuine), np.array(stranger)
    assert result.known_accepted == np.mean(genuine <= result.threshold)
    assert result.strangers_rejected == np.mean(stranger > result.threshold)
    # 30 strangers cannot support FAR 1e-3: the threshold is the best balanced split, and says so.
    assert result.chosen_by.startswith("best balanced split") and result.point.impostor_pairs == 30
    assert result.point.far_upper == pytest.approx(evaluation.far_upper_bound(0, 30))
    # No other cut does better on the balanced score.
    best = (result.known_accepted + result.strangers_rejected) / 2
    for t in np.concatenate([genuine, stranger]):
        assert (np.mean(genuine <= t) + np.mean(stranger > t)) / 2 <= best + 1e-12


def with_impostors_at(pairs: evaluation.Pairs, distances: list[float]) -> evaluation.Pairs:
    """The pairs with their first impostor pairs moved to these distances."""
    d = pairs.distance.copy()
    d[np.nonzero(~pairs.same)[0][: len(distances)]] = distances
    return evaluation.Pairs(d, pairs.same, pairs.left, pairs.right)


def test_an_impostor_pair_at_distance_zero_is_a_reason_not_an_index_error() -> None:
    # 3000 impostor pairs bound a FAR of 1e-3 only with no false accept; one sits at 0 (one picture, two names).
    pairs = with_impostors_at(synthetic_pairs(impostors=3000, genuine=100), [0.0])
    fitted = evaluation.fit_at_far(pairs, 1e-3)
    assert isinstance(fitted, evaluation.Unsupported)
    assert fitted.reason == (
        "1 different-person pair is at distance 0 (the same picture under two names), "
        "and a FAR of 1e-03 over 3000 pairs allows 0 false accepts"
    )


def test_a_threshold_of_zero_is_never_recommended() -> None:
    # 10 000 impostor pairs allow 4 false accepts at 1e-3; five are identical pictures (float rounding
    # leaves them a hair above 0): the only threshold left accepts identical pictures only.
    pairs = with_impostors_at(synthetic_pairs(impostors=10_000, genuine=500), [0.0, 1e-8, 2e-8, 3e-4, 4e-4])
    fitted = evaluation.fit_at_far(pairs, 1e-3)
    assert isinstance(fitted, evaluation.Unsupported)
    assert fitted.reason.startswith("5 different-person pairs are at distance 0")
    # Four of them are within what the target allows: a real threshold, paying them as false accepts.
    fewer = with_impostors_at(synthetic_pairs(impostors=10_000, genuine=500), [0.0, 1e-8, 2e-8, 3e-4])
    point = evaluation.fit_at_far(fewer, 1e-3)
    assert isinstance(point, OperatingPoint) and point.threshold > 0.5 and point.far == 4 / 10_000


def test_ties_at_the_boundary_are_all_accepted_or_all_refused() -> None:
    base = synthetic_pairs(impostors=10_000, genuine=500)
    # The 3rd to 8th nearest impostor pairs share one distance: 4 false accepts are allowed, so the
    # threshold stops below the tie (2 accepted) rather than between tied pairs.
    impostor = np.sort(base.distance[~base.same])
    tied = impostor[2]
    order = np.argsort(np.where(base.same, np.inf, base.distance))
    d = base.distance.copy()
    d[order[2:8]] = tied
    pairs = evaluation.Pairs(d, base.same, base.left, base.right)
    point = evaluation.fit_at_far(pairs, 1e-3)
    assert isinstance(point, OperatingPoint)
    assert point.threshold < tied and point.far == 2 / 10_000


def test_sets_of_one_kind_of_pair_are_refused_with_a_sentence() -> None:
    x, labels = clusters(n_people=1, per=5)
    with pytest.raises(Precondition, match="all of one person"):
        evaluation.report(x, labels, images=5)
    x, labels = clusters(n_people=6, per=1)
    with pytest.raises(Precondition, match="no two of one person"):
        evaluation.report(x, labels, images=6)


def test_the_report_names_pictures_enrolled_under_two_names() -> None:
    x, labels = clusters(n_people=10, per=6, spread=1.2)
    x = np.vstack([x, x[:1]])
    labels = [*labels, "impostor"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result, _ = evaluation.report(x, labels, images=len(labels))
    assert result.notes[0].startswith(
        f"1 different-person pair is at distance 0, the same picture under two names ({labels[0]!r} and 'impostor')"
    )
    assert all(p.threshold > 0.5 for p in result.points)


def test_open_set_with_no_second_face_of_anyone_answers_without_nan() -> None:
    x, labels = clusters(n_people=6, per=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = evaluation.open_set(x, labels)
    assert found.known_accepted == 0.0 and np.isfinite(found.threshold)
