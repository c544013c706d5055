"""Verification metrics checked against brute force on seeded synthetic embeddings."""

from __future__ import annotations

import numpy as np

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


def test_threshold_at_far_respects_the_target_and_pair_counts_gate_tar_at_far() -> None:
    x, labels = clusters(n_people=10, per=6, spread=1.2)
    result, c = evaluation.report(x, labels, images=len(labels), target_far=0.05)
    pairs = evaluation.all_pairs(x, labels)
    far = np.mean(pairs.distance[~pairs.same] <= result.threshold_at_target_far)
    assert far <= 0.05
    # 10 people x 6: 1620 different pairs → 1e-2 is estimable, 1e-3 is not.
    assert set(result.tar_at_far) == {"1e-02"}


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
    # No other cut does better on the balanced score.
    best = (result.known_accepted + result.strangers_rejected) / 2
    for t in np.concatenate([genuine, stranger]):
        assert (np.mean(genuine <= t) + np.mean(stranger > t)) / 2 <= best + 1e-12
