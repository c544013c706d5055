"""Identify right after an enrolment: the SVM refit policy against the previous one, with ratios.

    .venv/bin/python -m bench.identify_after_change                   # 10, 100 and 1,000 identities (~2 min)
    .venv/bin/python -m bench.identify_after_change --sizes 10 100    # quicker

Each gallery holds N identities of two faces but one (seeded synthetic unit vectors, d=128, enrolled
as embeddings: no detector or embedder), with a current SVM. Then, for each policy in turn, a round is:
enroll the missing face, so the gallery holds N x 2 faces, time the Identify (by embedding) that
follows, let any refit end, and remove that face again (untimed). The previous
policy refits a stale SVM on the request up to 2,000 faces, so that Identify waits for the whole fit;
the new one (gallery.classifier.StoreClassifier) does so only when the predicted fit is cheap, and
otherwise answers at once with the previous SVM (classifier_stale) while the refit runs in the
background. Between rounds the background refit is let finish, so rounds do not overlap.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gallery.backend import open_gallery
from gallery.classifier import StoreClassifier
from gallery.gallery import Gallery
from gallery.options import GalleryOptions
from gallery.rows import NewFace
from gallery.store import Store

DIM = 128
MODEL = "synthetic-128"
FACES_PER_IDENTITY = 2
OLD_INLINE_MAX_FACES = 2000  # the previous policy: refit on the request up to this many faces


class PreviousPolicy(StoreClassifier):
    """The refit policy before this bench: on the request whenever the gallery holds <= 2,000 faces."""

    def _refit_inline(self, identities: int, faces: int) -> bool:
        return faces <= OLD_INLINE_MAX_FACES


class _NoPictures:
    """The detector and embedder ports: never called, every face is enrolled as an embedding."""

    def detect(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError

    embed = model_info = detect


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True), dtype=np.float32)


def make_gallery(path: Path, identities: int, rng: np.random.Generator) -> np.ndarray:
    """Bulk-stores identities x 2 faces around random centres, less the last identity's second face (each
    round enrolls it); returns the centres (identities, DIM)."""
    centres = unit(rng.standard_normal((identities, DIM)))
    batches = []
    for i, c in enumerate(centres):
        faces = FACES_PER_IDENTITY - (i == identities - 1)
        batches.append(
            (
                f"person-{i:04d}",
                [NewFace(unit(c + 0.3 * unit(rng.standard_normal(DIM)))) for _ in range(faces)],
            )
        )
    with Store(path, MODEL, DIM) as store:
        store.add_many(batches)
    return centres


def rounds_of(
    g: Gallery, policy: type[StoreClassifier], centres: np.ndarray, rounds: int, rng: np.random.Generator
) -> tuple[list[float], list[bool]]:
    """Identify's seconds right after each of `rounds` enrolments, and whether each answer was stale."""
    # The gallery builds its own classifier; the bench swaps in the policy under test (it adopts the
    # fit the store keeps, so both policies start from a current SVM).
    g._classifier.close()
    g._classifier = policy(g._store, g.options.svm_inline_refit_max_s)
    seconds, stale = [], []
    last = len(centres) - 1
    for r in range(rounds):
        face = unit(centres[last] + 0.3 * unit(rng.standard_normal(DIM)))
        (added,) = g.enroll(f"person-{last:04d}", embeddings=[(face.tolist(), "")])
        query = unit(centres[r % len(centres)] + 0.3 * unit(rng.standard_normal(DIM)))
        clock = time.perf_counter()
        answer = g.identify_embedding(query.tolist())
        seconds.append(time.perf_counter() - clock)
        stale.append(answer.classifier_stale)
        g._classifier.wait_for_refit(600)  # the next round starts with nothing running
        g.remove_face(added.face_id)  # back to one face short: the next round's enrolment fills it
    return seconds, stale


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10, 100, 1000], help="identities per gallery"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="enrolments per policy (1 at >= 1,000 identities)"
    )
    args = parser.parse_args(argv)
    options = GalleryOptions(dimension=DIM)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            rng = np.random.default_rng(7)
            path = Path(tmp) / f"g{n}.sqlite"
            centres = make_gallery(path, n, rng)
            g = open_gallery(path, MODEL, _NoPictures(), _NoPictures(), options)  # type: ignore[arg-type]
            try:
                clock = time.perf_counter()
                g.train()
                fit_s = time.perf_counter() - clock
                rounds = 1 if n >= 1000 else args.rounds
                old, old_stale = rounds_of(g, PreviousPolicy, centres, rounds, rng)
                new, new_stale = rounds_of(g, StoreClassifier, centres, rounds, rng)
            finally:
                g.close()
            rows.append((n, n * FACES_PER_IDENTITY, fit_s, old, old_stale, new, new_stale))
            out(f"... {n} identities done")
    out()
    out("Identify by embedding right after an enrolment (median of the rounds, ms); SVM fit = one Train")
    out(
        f"{'identities':>10} {'faces':>6} {'SVM fit':>9} {'previous':>10} {'new':>9} {'ratio':>8}  new answer"
    )
    for n, faces, fit_s, old, old_stale, new, new_stale in rows:
        o, w = statistics.median(old) * 1e3, statistics.median(new) * 1e3
        how = "stale SVM, refit in background" if any(new_stale) else "refit on the request"
        assert not any(old_stale)
        out(f"{n:>10} {faces:>6} {fit_s * 1e3:>7.0f}ms {o:>8.1f}ms {w:>7.1f}ms {o / w:>7.1f}x  {how}")


if __name__ == "__main__":
    main()
