"""Re-embedding a collection under a new contract, as a long-running operation. Pure: no grpc.

A collection's faces keep a picture of themselves (gallery/pictures.py), so its vectors can be computed
again under another detector, alignment or embedder model without collecting a picture anew. The work runs
beside the collection, which keeps serving its old vectors meanwhile:

1. embedding: every face of the old store is detected again on its kept picture (the face whose box best
   overlaps the kept box), aligned and embedded under the target contract, and copied with its picture,
   id, box and times into the collection's next store (generation + 1), an identity at a time;
2. catching up: what was enrolled, removed or renamed in the old store meanwhile (its change log since the
   version the operation recorded) is carried over the same way;
3. switching: the old store is sealed (every write there is refused with UNAVAILABLE and a retry delay,
   race-free, in every replica), the last changes are carried over, and the catalog switches the
   collection to the new store in one transaction: the collection is never half-switched;
4. dropping old vectors: the old store goes, with its pictures.

Every step is resumable from what the stores and the catalog hold, so a process killed at any point (kill
-9 included) loses nothing: its operation's heartbeat goes stale and the next process that looks (another
replica, or this one restarted) takes it over and goes on. Faces that cannot be carried (no kept picture, no
face found under the new detector) are listed by id; unless the request allowed dropping them, they fail the
operation before the switch and the collection stays as it was.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from facerec import alignment
from facerec.errors import FacerecError, InvalidInput, NotFound, Precondition, Reason
from facerec.images import decode_image
from gallery.ports import (
    Catalog,
    CollectionRow,
    Contract,
    DetectedFace,
    DetectorOptions,
    FaceDetector,
    FaceEmbedder,
    FaceStore,
    FailedFace,
    OperationRow,
)
from gallery.rows import FaceRow, IdentityRow, KeptPicture

log = logging.getLogger(__name__)

DETECTORS = ("mtcnn", "retinaface")
ALIGNMENTS = ("box", "similarity")
OPERATION_PREFIX = "operations/"
NO_PICTURE = "It keeps no picture (enrolled as an embedding, or before faces kept pictures)."


class ReembedHost(Protocol):
    """What the runner needs of the collections (gallery/collections.py's CollectionManager)."""

    def open_store(self, row: CollectionRow, generation: int, model: str) -> FaceStore:
        """A store of the collection's generation for `model`, created when missing; the caller closes it."""
        ...

    def drop_store(self, row: CollectionRow, generation: int) -> None:
        """Removes a generation's store for good (its faces, vectors and pictures)."""
        ...

    def switched(self, name: str) -> None:
        """The catalog switched the collection: serve its new generation now."""
        ...


@dataclass(frozen=True)
class ReembedSettings:
    """batch: faces detected and embedded per step (and progress saved after each); stale_after_s: an
    operation whose heartbeat is older than this is taken over (a step must take less); poll_s: how often an
    idle runner looks for operations to take over."""

    batch: int = 16
    stale_after_s: float = 20.0
    poll_s: float = 2.0


def operation_name(operation_id: str) -> str:
    return OPERATION_PREFIX + operation_id


def operation_id_of(name: str) -> str:
    """The id in an operation's name ("operations/<id>", or the bare id). InvalidInput when empty."""
    op_id = name[len(OPERATION_PREFIX) :] if name.startswith(OPERATION_PREFIX) else name
    if not op_id or "/" in op_id:
        raise InvalidInput(f"An operation is named operations/<id>, not {name[:80]!r}.", field="name")
    return op_id


def cut_again(picture: KeptPicture, alignment_name: str) -> NDArray[np.uint8]:
    """The face's 160x160 crop cut from its kept picture at its kept box ("box") or landmarks ("similarity"),
    as the detector cuts it. InvalidInput when the picture cannot be decoded."""
    pixels = decode_image(picture.data)
    if alignment_name == "similarity":
        return alignment.similarity_crop(pixels, np.asarray(picture.landmarks, dtype=np.float64))
    x, y, w, h = picture.box
    return alignment.box_crop(pixels, alignment.tutorial_box(x, y, x + w, y + h))


def best_match(faces: Sequence[DetectedFace], box: tuple[float, float, float, float]) -> DetectedFace | None:
    """The detected face whose box overlaps the kept box most (IoU at least 0.3), or None."""
    best, best_iou = None, 0.3
    for face in faces:
        iou = _iou(face.box, box)
        if iou >= best_iou:
            best, best_iou = face, iou
    return best


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


class OwnerLost(Exception):
    """Another process took the operation over (this one was too slow to say it was alive): stop."""


class Reembedder:
    """Starts re-embeds, answers where they stand, and runs them in a thread of this process (any replica
    may run any operation: the catalog hands each to one process at a time)."""

    def __init__(
        self,
        catalog: Catalog,
        host: ReembedHost,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        settings: ReembedSettings = ReembedSettings(),
        timeout_s: float = 60.0,
    ) -> None:
        self._catalog = catalog
        self._host = host
        self._detector = detector
        self._embedder = embedder
        self._settings = settings
        self._timeout_s = timeout_s
        self.owner = uuid.uuid4().hex
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the RPCs' side -------------------------------------------------------------------------------

    def start(self, collection: str, target: Contract, drop_failed: bool) -> OperationRow:
        """Queues a re-embed of the collection to `target` (its empty fields: the collection's current
        ones) and wakes the runner. InvalidInput for a contract this deployment cannot serve; Precondition
        while another operation runs on the collection."""
        row = self._catalog.get(collection)
        full = Contract(
            target.detector or row.contract.detector,
            target.alignment or row.contract.alignment,
            target.model or row.contract.model,
        )
        self.check_contract(full)
        op = self._catalog.start_operation(row.name, full, drop_failed)
        self._wake.set()
        return op

    def get(self, name: str) -> OperationRow:
        return self._catalog.operation(operation_id_of(name))

    def check_contract(self, contract: Contract) -> None:
        """InvalidInput naming what this deployment does not serve."""
        if contract.detector not in DETECTORS:
            raise InvalidInput(
                f"The detector must be one of {', '.join(DETECTORS)}, not {contract.detector!r}.",
                field="contract.detector",
            )
        if contract.alignment not in ALIGNMENTS:
            raise InvalidInput(
                f"The alignment must be one of {', '.join(ALIGNMENTS)}, not {contract.alignment!r}.",
                field="contract.alignment",
            )
        served = [m.name for m in self._embedder.models(timeout_s=self._timeout_s)]
        if contract.model not in served:
            raise InvalidInput(
                f"The embedder serves {', '.join(served)}, not {contract.model!r}.", field="contract.model"
            )

    # --- the runner -----------------------------------------------------------------------------------

    def start_thread(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reembed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:  # never let the runner die: the operation stays claimable by others
                log.exception("re-embed runner failed; retrying")
                worked = False
            if not worked:
                self._wake.wait(self._settings.poll_s)
                self._wake.clear()

    def run_once(self) -> bool:
        """Takes one unfinished operation nobody runs and runs it to its end; False when there was none."""
        op = self._catalog.claim_operation(self.owner, int(self._settings.stale_after_s * 1000))
        if op is None:
            return False
        log.info("re-embed %s of collection %s: %s", op.operation_id, op.collection, op.stage)
        try:
            _Run(self, op).run()
        except OwnerLost:
            log.warning("re-embed %s was taken over by another process", op.operation_id)
        return True


class _Run:
    """One operation, from wherever it stands to its end."""

    def __init__(self, runner: Reembedder, op: OperationRow) -> None:
        self.r = runner
        self.op = op

    def save(self, **changes: object) -> None:
        if self.r._stop.is_set():
            raise OwnerLost()
        try:
            self.op = self.r._catalog.update_operation(replace(self.op, **changes))  # type: ignore[arg-type]
        except Precondition as exc:
            raise OwnerLost() from exc

    def run(self) -> None:
        catalog, host, op = self.r._catalog, self.r._host, self.op
        try:
            row = catalog.get(op.collection)
        except FacerecError:  # the collection was deleted meanwhile: nothing to switch
            catalog.finish_operation(op.operation_id, "The collection was deleted.", Reason.NOT_FOUND)
            return
        old_generation = op.generation - 1
        if op.switched:
            self.drop_old(row, old_generation)
            return
        old = host.open_store(row, row.generation, op.source.model)
        new = host.open_store(row, op.generation, op.target.model)
        try:
            failed = self.carry(row, old, new)
            if failed is None:
                return
            self.save(stage="switching")
            old.seal()
            self.catch_up(old, new)
            new.reserve_face_ids(old.last_face_id())  # ids are never given twice, across generations
            if self.op.failed and not self.op.drop_failed:
                self.fail_and_discard(row, new, unseal=old)
                return
            switched = catalog.switch(op.operation_id)
        finally:
            old.close()
            new.close()
        host.switched(switched.name)
        self.op = replace(self.op, switched=True)
        self.drop_old(switched, old_generation)

    def carry(self, row: CollectionRow, old: FaceStore, new: FaceStore) -> bool | None:
        """Steps 1 and 2; None when the operation ended here (failed)."""
        if self.op.stage in ("queued", "embedding"):
            if self.op.stage == "queued":
                _, faces = old.counts()
                self.save(stage="embedding", source_version=old.version(), faces_total=faces)
            self.embed_all(old, new)
            self.save(stage="catching up")
        self.catch_up(old, new)
        if self.op.failed and not self.op.drop_failed:
            self.fail_and_discard(row, new)
            return None
        return True

    def embed_all(self, old: FaceStore, new: FaceStore) -> None:
        """Every face of the old store not yet in the new one (a resumed run skips what is there, and what
        failed already), an identity at a time."""
        after = ""
        while True:
            page = old.list_identities(after=after, limit=100)
            if not page:
                return
            for identity in page:
                try:
                    _, faces = old.get_identity(identity.identity)
                except NotFound:  # renamed or removed since the page was read: catching up carries it
                    continue
                there = new.identities_of([f.face_id for f in faces])
                done = there.keys() | {f.face_id for f in self.op.failed}
                todo = [f for f in faces if f.face_id not in done]
                if todo:
                    self.copy(old, new, identity, todo)
            after = page[-1].identity

    def catch_up(self, old: FaceStore, new: FaceStore) -> None:
        """Carries the old store's changes since the recorded version to the new one, face by face: each
        changed face is made in the new store what it is in the old (present under the same identity, or
        gone). A gap in the log (pruned) compares the two stores whole."""
        while True:
            version = self.op.source_version
            changes = old.changes_since(version, limit=1000)
            if not changes:
                return
            if changes[0].version != version + 1:
                touched = set(int(i) for i in old.face_ids()) | set(int(i) for i in new.face_ids())
            else:
                touched = {i for change in changes for i in change.face_ids}
            self.resync(old, new, sorted(touched))
            self.save(source_version=changes[-1].version)

    def resync(self, old: FaceStore, new: FaceStore, face_ids: Sequence[int]) -> None:
        in_old = old.identities_of(face_ids)
        in_new = new.identities_of(face_ids)
        stale = [i for i, who in in_new.items() if in_old.get(i) != who]
        for face_id in stale:
            new.remove_face(face_id)
        missing = [i for i in face_ids if i in in_old and (i not in in_new or i in stale)]
        by_identity: dict[str, list[int]] = {}
        for face_id in missing:
            by_identity.setdefault(in_old[face_id], []).append(face_id)
        for identity, ids in by_identity.items():
            try:
                row, faces = old.get_identity(identity)
            except NotFound:  # gone again since: its faces are in a later change
                continue
            wanted = set(ids)
            self.copy(old, new, row, [f for f in faces if f.face_id in wanted])

    def copy(self, old: FaceStore, new: FaceStore, identity: IdentityRow, faces: Sequence[FaceRow]) -> None:
        """Re-embeds these faces of one identity and stores them in the new store, in steps of `batch`."""
        batch = max(1, self.r._settings.batch)
        for start in range(0, len(faces), batch):
            part = faces[start : start + batch]
            pictures = old.pictures([f.face_id for f in part])
            carried, failed = self.reembed(part, pictures)
            if carried:
                new.import_faces([identity], carried)
                sources = {f.face_id: old.source_picture(f.face_id) for f in carried}
                new.import_pictures(
                    {f.face_id: pictures[f.face_id] for f in carried},
                    {i: data for i, data in sources.items() if data},
                )
            self.save(
                faces_done=self.op.faces_done + len(part),
                failed=self.op.failed + tuple(failed),
            )

    def reembed(
        self, faces: Sequence[FaceRow], pictures: dict[int, KeptPicture]
    ) -> tuple[list[FaceRow], list[FailedFace]]:
        """The faces' vectors under the target contract, from their kept pictures. Under the same detector
        the face is cut again where it was found (its kept box and landmarks): the vector then is what the
        original picture gives, to within the kept picture's encoding. Under another detector that detector
        finds it again (the face whose box best overlaps the kept one): as it would on a query."""
        target = self.op.target
        failed = [FailedFace(f.face_id, f.identity, NO_PICTURE) for f in faces if f.face_id not in pictures]
        kept = [f for f in faces if f.face_id in pictures]
        same = target.detector == self.op.source.detector
        at_box = [f for f in kept if same and len(pictures[f.face_id].landmarks) == 5]
        crops: list[tuple[FaceRow, NDArray[np.uint8]]] = []
        for face in at_box:
            try:
                crops.append((face, cut_again(pictures[face.face_id], target.alignment)))
            except FacerecError as exc:
                failed.append(FailedFace(face.face_id, face.identity, str(exc)))
        crops += self.detect_again([f for f in kept if f not in at_box], pictures, failed)
        if not crops:
            return [], failed
        embedded = self.r._embedder.embed(
            [crop for _, crop in crops], timeout_s=self.r._timeout_s, model=target.model
        )
        carried: list[FaceRow] = []
        for (face, _), vec in zip(crops, embedded.vectors, strict=True):
            if isinstance(vec, FacerecError):
                failed.append(FailedFace(face.face_id, face.identity, str(vec)))
            else:
                carried.append(replace(face, embedding=vec, model=embedded.model))
        return carried, failed

    def detect_again(
        self, faces: Sequence[FaceRow], pictures: dict[int, KeptPicture], failed: list[FailedFace]
    ) -> list[tuple[FaceRow, NDArray[np.uint8]]]:
        if not faces:
            return []
        target = self.op.target
        options = DetectorOptions(alignment=target.alignment, model=target.detector)
        found = self.r._detector.detect(
            [pictures[f.face_id].data for f in faces], options, timeout_s=self.r._timeout_s
        )
        crops: list[tuple[FaceRow, NDArray[np.uint8]]] = []
        for face, image in zip(faces, found, strict=True):
            match = None if image.error is not None else best_match(image.faces, pictures[face.face_id].box)
            if match is None:
                why = f"No face was found on its kept picture by {target.detector}."
                failed.append(FailedFace(face.face_id, face.identity, why))
            else:
                crops.append((face, match.crop))
        return crops

    def fail_and_discard(self, row: CollectionRow, new: FaceStore, unseal: FaceStore | None = None) -> None:
        failed = self.op.failed
        first = failed[0]
        sentence = (
            f"{len(failed)} face(s) cannot be re-embedded (face {first.face_id} of {first.identity!r}: "
            f"{first.reason.rstrip('.')}); the collection is unchanged: re-embed with drop_failed to leave them out."
        )
        new.close()
        self.r._host.drop_store(row, self.op.generation)
        if unseal is not None:
            unseal.unseal()
        self.r._catalog.finish_operation(self.op.operation_id, sentence, Reason.FAILED_PRECONDITION)

    def drop_old(self, row: CollectionRow, old_generation: int) -> None:
        self.save(stage="dropping old vectors")
        self.r._host.drop_store(row, old_generation)
        self.save(stage="done")
        self.r._catalog.finish_operation(self.op.operation_id)
        log.info("re-embed %s of collection %s done", self.op.operation_id, row.name)
