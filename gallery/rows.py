"""What the stores hold and how it is encoded, shared by both stores (SQLite and PostgreSQL). Pure.

Rows are plain frozen dataclasses; embeddings are stored as dim little-endian float32s, bit-exact; a
fitted classifier as one .npz of plain arrays (no pickles) with the store version it was fit at.
"""

from __future__ import annotations

import io
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facerec.errors import InvalidInput, Precondition, Unavailable

Box = tuple[float, float, float, float]  # x, y, width, height in pixels of the source picture

# The columns of a face row, in FaceRow's order (both stores' tables have them).
FACE_COLUMNS = "face_id, identity, embedding, model, image_sha256, box_x, box_y, box_w, box_h, created_at_ms"
# ... and whether the face has a kept picture (FaceRow.has_picture), for a query FROM faces.
FACE_COLUMNS_WITH_PICTURE = (
    FACE_COLUMNS + ", EXISTS (SELECT 1 FROM pictures p WHERE p.face_id = faces.face_id)"
)
# An identity's creation time and face count, for a query ending in its name's placeholder.
IDENTITY_WITH_COUNT = (
    "SELECT created_at_ms, (SELECT COUNT(*) FROM faces f WHERE f.identity = i.name) FROM identities i"
    " WHERE i.name ="
)


@dataclass(frozen=True)
class KeptPicture:
    """A face's kept picture: the region around the face (gallery/pictures.py makes it), encoded, with the
    face's box on it. Enough to detect, align and embed the face again under another contract."""

    data: bytes
    media_type: str  # "image/webp", "image/jpeg", ...
    width: int
    height: int
    box: Box  # the face's box on this picture
    # Its five landmarks on this picture (left eye, right eye, nose, mouth l/r); () when not known. With the
    # box, a re-embed under the same detector cuts the face again where it was found (gallery/reembed.py).
    landmarks: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class NewFace:
    """A face to enroll. embedding: (dim,) float32 unit vector; box: x, y, w, h in pixels of the source image.
    picture: its kept picture (None for a face enrolled as an embedding); source_picture: the whole
    encoded source picture, kept only when the collection keeps them (b"" otherwise)."""

    embedding: NDArray[np.float32]
    image_sha256: str = ""
    box: Box | None = None
    picture: KeptPicture | None = None
    source_picture: bytes = b""


class DuplicatePicture(Exception):
    """add_faces refused a picture already enrolled for the identity (by another writer since the caller's
    check: a shared store's constraint). Nothing of the call was stored; check again and retry."""


@dataclass(frozen=True)
class FaceRow:
    """A stored face. embedding: (dim,) float32, bit-exact as enrolled."""

    face_id: int
    identity: str
    embedding: NDArray[np.float32]
    model: str
    image_sha256: str
    box: Box | None
    created_at_ms: int
    has_picture: bool = False


@dataclass(frozen=True)
class IdentityRow:
    identity: str
    face_count: int
    created_at_ms: int


@dataclass(frozen=True)
class Change:
    """One committed change: the store version it made, and the faces it added or removed."""

    version: int
    op: str  # ADD or REMOVE
    face_ids: list[int]


ADD = "add"
REMOVE = "remove"
# Change-log rows older than this are pruned by writers, at every PRUNE_EVERY_VERSIONS-th version; a
# reader that was away longer starts again from the store (it notices the gap in versions).
CHANGE_LOG_KEEP_MS = 24 * 3600 * 1000
PRUNE_EVERY_VERSIONS = 1000


@dataclass(frozen=True)
class StoreState:
    """What a request reads once and passes along: the store version, its counts, and the store version
    the kept classifier was fit at (-1 when none is kept). Read in one round trip (FaceStore.state)."""

    version: int
    identities: int
    faces: int
    classifier_version: int


def new_store_id() -> str:
    """A store's identity, drawn once when it is created: derived files name it, so a file built from
    another store (one deleted and made again at the same path, a migration's old target) is never served."""
    return uuid.uuid4().hex


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def check_identity(identity: str) -> None:
    if not identity:
        raise InvalidInput("The identity must not be empty.")


def embedding_bytes(embedding: NDArray[np.float32], dim: int) -> bytes:
    """The stored form of an embedding: dim little-endian float32s. InvalidInput for a wrong shape or NaN."""
    vec = np.asarray(embedding)
    if vec.shape != (dim,):
        raise InvalidInput(f"An embedding must have {dim} values, not shape {vec.shape}.")
    if not np.issubdtype(vec.dtype, np.floating):
        raise InvalidInput("An embedding must hold floating-point values.")
    vec = vec.astype("<f4", copy=False)
    if not np.all(np.isfinite(vec)):
        raise InvalidInput("An embedding holds NaN or infinite values.")
    return vec.tobytes()


def vector(blob: bytes) -> NDArray[np.float32]:
    """embedding_bytes read back: (dim,) float32."""
    return np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32)


def box_columns(box: Box | None) -> tuple[float | None, ...]:
    """A box as the four box_* columns (NULLs for none)."""
    return box if box is not None else (None, None, None, None)


def face_row(row: Sequence[Any]) -> FaceRow:
    """A FaceRow from the FACE_COLUMNS of one row (bytes or a bytes-like embedding), or from
    FACE_COLUMNS_WITH_PICTURE's."""
    face_id, identity, blob, model, sha, bx, by, bw, bh, created = row[:10]
    box = None if bx is None else (float(bx), float(by), float(bw), float(bh))
    has_picture = bool(row[10]) if len(row) > 10 else False
    return FaceRow(int(face_id), identity, vector(blob), model, sha, box, int(created), has_picture)


SEALED = "The collection is moving to its re-embedded vectors; retry in a moment."


def sealed() -> Unavailable:
    """What a write to a sealed store raises (FaceStore.seal): the re-embed switches within moments."""
    return Unavailable(SEALED, retry_after_s=1.0)


def unpack(
    rows: Sequence[Sequence[Any]], dim: int
) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]:
    """Rows of (face_id, identity, embedding) as ids (n,) int64, vectors (n, dim) float32, identities (n)."""
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(bytes(r[2]) for r in rows), dtype="<f4").astype(np.float32)
    return ids, vectors.reshape(len(rows), dim), [r[1] for r in rows]


class ModelClaim(Enum):
    """What a store opened for a model does with the model it holds."""

    KEEP = "keep"  # it holds this model already
    CLAIM = "claim"  # a new store: record the model and dimension
    SWITCH = "switch"  # an empty store of another model adopts this one (a change: the version moves)


def claim_model(
    held_model: str | None, held_dim: int | None, faces: int, model: str, dim: int, fresh: str
) -> ModelClaim:
    """The one rule of both stores: a store holds embeddings of one model. Precondition when it holds faces
    of another model or another dimension; fresh names what to use instead ("a new gallery file")."""
    if held_model is None:
        return ModelClaim.CLAIM
    if held_model != model:
        if faces:
            raise Precondition(
                f"The gallery holds embeddings of model {held_model!r}, not {model!r}; "
                f"use {fresh} or re-enroll."
            )
        return ModelClaim.SWITCH
    if held_dim is not None and held_dim != dim:
        raise Precondition(f"The gallery holds {held_dim}-d embeddings, not {dim}-d.")
    return ModelClaim.KEEP


def classifier_bytes(arrays: dict[str, NDArray[Any]], store_version: int, store_id: str = "") -> bytes:
    """A fitted classifier's arrays, the store version it was fit at and the store's id, as one .npz (no
    pickles; each member carries a CRC-32, checked when it is read)."""
    out = io.BytesIO()
    named: dict[str, Any] = {
        "store_version": np.int64(store_version),
        "store_id": np.str_(store_id),
        **arrays,
    }
    np.savez(out, **named)
    return out.getvalue()


def classifier_from_bytes(data: bytes) -> tuple[int, dict[str, NDArray[Any]]]:
    """classifier_bytes read back: (store version, arrays). ValueError/KeyError when unreadable."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
    except (zipfile.BadZipFile, EOFError) as exc:  # a damaged zip, or a CRC that does not match
        raise ValueError(str(exc)) from exc
    arrays.pop("store_id", None)
    return int(arrays.pop("store_version")), arrays


def classifier_stamp_of(file: str) -> tuple[str, int]:
    """The store id and version a classifier_bytes file was fit at, read without its arrays (an .npz is a
    zip: only those two small members are read), after every member's CRC-32 was checked. ValueError /
    KeyError when it is damaged or is no such file."""
    try:
        with zipfile.ZipFile(file) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"member {bad} does not match its checksum")
        saved = np.load(file, allow_pickle=False)
        if not isinstance(saved, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz file")
        with saved:
            store_id = str(saved["store_id"]) if "store_id" in saved.files else ""
            return store_id, int(saved["store_version"])
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(str(exc)) from exc
