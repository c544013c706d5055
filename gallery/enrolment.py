"""Enroll's bookkeeping: duplicate pictures, the largest face of each, quality floors, embedding, the face's
kept picture (gallery/pictures.py), and the store commit with its index update as one step. Pure: no grpc."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facerec.errors import FacerecError, InvalidInput, Unavailable
from gallery import validation
from gallery.options import GalleryOptions
from gallery.pictures import face_picture
from gallery.ports import (
    DetectedFace,
    DetectorOptions,
    Embedded,
    FaceDetector,
    FaceStore,
    VectorIndex,
    largest_face,
)
from gallery.results import EnrollOutcome, EnrollResult
from gallery.rows import DuplicatePicture, KeptPicture, NewFace

log = logging.getLogger(__name__)
Embed = Callable[[list[NDArray[np.uint8]], float | None], Embedded]


@dataclass
class _Pending:
    slot: int
    face: NewFace
    outcome: EnrollOutcome
    faces_found: int
    duplicate_of: str = ""


class Enrolment:
    """Adds faces to identities. Shares the gallery's store, index and write lock (store commit and
    index update happen under it, so the two never disagree for long and a duplicate check and its
    insert are one step)."""

    def __init__(
        self,
        store: FaceStore,
        index: VectorIndex,
        detector: FaceDetector,
        embed: Embed,
        write_lock: AbstractContextManager[Any],
        options: GalleryOptions,
        model: str = "",
    ) -> None:
        """model: the gallery's (its contract's); embeddings given by callers must be of it. "" = the store's."""
        self._model = model
        self._store = store
        self._index = index
        self._detector = detector
        self._embed = embed
        self._write = write_lock
        self.options = options

    def enroll(
        self,
        identity: str,
        images: Sequence[bytes] = (),
        embeddings: Sequence[tuple[Sequence[float], str]] = (),
        options: DetectorOptions | None = None,
        timeout_s: float | None = None,
        strict: bool = False,
    ) -> list[EnrollResult]:
        """Adds faces to `identity`: the largest face of each picture, and each (values, model) embedding.

        Returns one result per picture, then one per embedding. Bad pictures or embeddings get an
        INVALID result and the rest is still enrolled. A picture already enrolled under another
        identity is enrolled with that name in duplicate_of (a warning), or, when strict, refused
        (INVALID). Returns once the faces are durably stored and in the index.
        """
        name = validation.new_identity(identity)
        self._refuse_look_alike(name)
        if not images and not embeddings:
            raise InvalidInput("Nothing to enroll: give at least one image or embedding.", field="images")
        if len(images) > self.options.max_images_per_request:
            raise InvalidInput(
                f"{len(images)} images in one Enroll; at most {self.options.max_images_per_request} are allowed.",
                field="images",
            )
        if len(embeddings) > self.options.max_embeddings_per_request:
            raise InvalidInput(
                f"{len(embeddings)} embeddings in one Enroll; "
                f"at most {self.options.max_embeddings_per_request} are allowed.",
                field="embeddings",
            )
        results: list[EnrollResult | None] = [None] * (len(images) + len(embeddings))
        pending: list[_Pending] = []
        repeats: dict[int, int] = {}  # slot -> first slot with the same bytes
        first_slot: dict[str, int] = {}
        twin_of: dict[int, str] = {}  # slot -> another identity enrolled from the same picture
        to_detect: list[tuple[int, bytes, str]] = []
        for slot, data in enumerate(images):
            if not data:
                results[slot] = EnrollResult(
                    EnrollOutcome.INVALID, error=InvalidInput("The image is empty (0 bytes).")
                )
                continue
            sha = hashlib.sha256(data).hexdigest()
            if sha in first_slot:
                repeats[slot] = first_slot[sha]
                continue
            first_slot[sha] = slot
            existing = self._store.find_face_by_image(name, sha)
            if existing is not None:
                results[slot] = EnrollResult(EnrollOutcome.DUPLICATE, face_id=existing)
                continue
            other = self._store.other_identity_with_image(name, sha)
            if other is not None and strict:
                results[slot] = EnrollResult(
                    EnrollOutcome.INVALID,
                    error=InvalidInput(
                        f"This picture is already enrolled as {other!r}; it was not enrolled as {name!r} too."
                    ),
                    duplicate_of=other,
                )
                continue
            if other is not None:
                twin_of[slot] = other
            to_detect.append((slot, data, sha))

        if to_detect:
            detected = self._detector.detect(
                [data for _, data, _ in to_detect], options or self.options.detect_options, timeout_s
            )
            chosen: list[tuple[int, bytes, str, DetectedFace, int]] = []
            for (slot, data, sha), image in zip(to_detect, detected, strict=True):
                if image.error is not None:
                    results[slot] = EnrollResult(EnrollOutcome.INVALID, error=image.error)
                elif not image.faces:
                    results[slot] = EnrollResult(EnrollOutcome.NO_FACE)
                else:
                    face = largest_face(image.faces)
                    if not self._good_enough(face):
                        results[slot] = EnrollResult(
                            EnrollOutcome.REJECTED_QUALITY, box=face.box, faces_found=len(image.faces)
                        )
                    else:
                        chosen.append((slot, data, sha, face, len(image.faces)))
            if chosen:
                embedded = self._embed([face.crop for _, _, _, face, _ in chosen], timeout_s)
                for (slot, data, sha, face, found), vector in zip(chosen, embedded.vectors, strict=True):
                    if isinstance(vector, FacerecError):
                        results[slot] = EnrollResult(
                            EnrollOutcome.INVALID, box=face.box, error=vector, faces_found=found
                        )
                        continue
                    outcome = EnrollOutcome.MULTIPLE_FACES if found > 1 else EnrollOutcome.ENROLLED
                    new = NewFace(
                        vector,
                        sha,
                        face.box,
                        picture=_kept_picture(data, face),
                        source_picture=data if self.options.keep_source_pictures else b"",
                    )
                    pending.append(_Pending(slot, new, outcome, found, twin_of.get(slot, "")))

        for j, (values, model) in enumerate(embeddings):
            slot = len(images) + j
            try:
                vector = validation.embedding(
                    values, self.options.dimension, model, self._model or self._store.model
                )
            except FacerecError as exc:
                results[slot] = EnrollResult(EnrollOutcome.INVALID, error=exc)
                continue
            pending.append(_Pending(slot, NewFace(vector), EnrollOutcome.ENROLLED, 0))

        if pending:
            self._commit(name, pending, results)
        for slot, first in repeats.items():
            earlier = results[first]
            assert earlier is not None
            if earlier.face_id:
                results[slot] = EnrollResult(
                    EnrollOutcome.DUPLICATE,
                    face_id=earlier.face_id,
                    box=earlier.box,
                    faces_found=earlier.faces_found,
                    duplicate_of=earlier.duplicate_of,
                )
            else:
                results[slot] = earlier
        return [r if r is not None else EnrollResult(EnrollOutcome.INVALID) for r in results]

    def _refuse_look_alike(self, name: str) -> None:
        """InvalidInput when name is new and looks like an enrolled identity (the same TR39 skeleton)."""
        if self._store.has_identity(name):
            return
        other = self._store.confusable_identity(name)
        if other is not None:
            raise InvalidInput(
                f"The identity {name!r} looks like the enrolled identity {other!r}; "
                f"enroll into {other!r} or choose a name that does not look like it."
            )

    def _commit(self, name: str, pending: list[_Pending], results: list[EnrollResult | None]) -> None:
        with self._write:
            # Again under the write lock: a concurrent Enroll may have created a look-alike meanwhile.
            self._refuse_look_alike(name)
            # A shared store refuses a picture another replica stored since the check (DuplicatePicture):
            # each retry then finds at least that one, so this ends.
            for _ in range(len(pending) + 1):
                try:
                    ids, keep = self._store_new(name, pending, results)
                    break
                except DuplicatePicture:
                    continue
            else:
                raise Unavailable("Other writers kept enrolling these pictures at this moment; try again.")
            if not keep:
                return
            self._index.add(
                np.asarray(ids, dtype=np.int64),
                np.stack([item.face.embedding for item in keep]).astype(np.float32),
            )
        for item, face_id in zip(keep, ids, strict=True):
            results[item.slot] = EnrollResult(
                item.outcome,
                int(face_id),
                item.face.box,
                faces_found=item.faces_found,
                duplicate_of=item.duplicate_of,
            )

    def _store_new(
        self, name: str, pending: list[_Pending], results: list[EnrollResult | None]
    ) -> tuple[list[int], list[_Pending]]:
        """Stores the pending faces whose pictures the identity does not hold yet; answers DUPLICATE for
        the rest. Returns the new ids and the faces they belong to. The caller holds the write lock."""
        keep = []
        for item in pending:
            # A concurrent Enroll may have stored the same picture since the first check.
            sha = item.face.image_sha256
            existing = self._store.find_face_by_image(name, sha) if sha else None
            if existing is not None:
                results[item.slot] = EnrollResult(
                    EnrollOutcome.DUPLICATE,
                    face_id=existing,
                    box=item.face.box,
                    faces_found=item.faces_found,
                )
            else:
                keep.append(item)
        if not keep:
            return [], keep
        return self._store.add_faces(name, [item.face for item in keep]), keep

    def _good_enough(self, face: DetectedFace) -> bool:
        return (
            face.confidence >= self.options.enroll_min_confidence
            and min(face.box[2], face.box[3]) >= self.options.enroll_min_face_px
        )


def _kept_picture(data: bytes, face: DetectedFace) -> KeptPicture | None:
    """The face's kept picture; None (the face is enrolled without one) when this process cannot decode what
    the detector could (a format or limit of its own), rather than refusing the face."""
    try:
        return face_picture(data, face.box, landmarks=face.landmarks)
    except FacerecError as exc:
        log.warning("a face is enrolled without its kept picture: %s", exc)
        return None
