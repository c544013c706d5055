"""Kept face pictures in SQL, shared by both stores: the same statements on SQLite ("?" marks) and
PostgreSQL ("%s" marks), run on the caller's connection inside the caller's transaction. Pure: no grpc.

The tables (gallery/sqlite_schema.py, gallery/pg_schema.py): pictures(face_id, data, media_type, width,
height, box_x, box_y, box_w, box_h, landmarks) and source_pictures(face_id, data), each keyed by a face and deleted
with it (ON DELETE CASCADE): whatever statement removes a face removes its pictures in its transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from facerec.errors import NotFound
from gallery.rows import KeptPicture

# Ids per IN (...) list: below SQLite's limit on host parameters (and cheap on PostgreSQL too).
_IN_CHUNK = 900

_UPSERT_PICTURE = (
    "INSERT INTO pictures (face_id, data, media_type, width, height, box_x, box_y, box_w, box_h, landmarks)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (face_id) DO UPDATE SET data = excluded.data,"
    " media_type = excluded.media_type, width = excluded.width, height = excluded.height,"
    " box_x = excluded.box_x, box_y = excluded.box_y, box_w = excluded.box_w, box_h = excluded.box_h,"
    " landmarks = excluded.landmarks"
)
_UPSERT_SOURCE = (
    "INSERT INTO source_pictures (face_id, data) VALUES (?, ?)"
    " ON CONFLICT (face_id) DO UPDATE SET data = excluded.data"
)
_PICTURE_COLUMNS = "face_id, data, media_type, width, height, box_x, box_y, box_w, box_h, landmarks"


class PictureSQL:
    """The statements on kept pictures, in one engine's parameter marks ("?" or "%s")."""

    def __init__(self, mark: str) -> None:
        self._mark = mark

    def _q(self, sql: str) -> str:
        """sql with its "?" marks in this engine's style (no statement here holds a literal "?")."""
        return sql if self._mark == "?" else sql.replace("?", self._mark)

    def write(self, db: Any, pictures: Mapping[int, KeptPicture], sources: Mapping[int, bytes]) -> None:
        """Stores (replacing) the pictures and source pictures of these faces; they must exist."""
        cur = db.cursor()
        try:
            if pictures:
                cur.executemany(
                    self._q(_UPSERT_PICTURE),
                    [
                        (
                            int(face_id),
                            bytes(p.data),
                            p.media_type,
                            int(p.width),
                            int(p.height),
                            *p.box,
                            landmarks_text(p.landmarks),
                        )
                        for face_id, p in pictures.items()
                    ],
                )
            kept = [(int(face_id), bytes(data)) for face_id, data in sources.items() if data]
            if kept:
                cur.executemany(self._q(_UPSERT_SOURCE), kept)
        finally:
            cur.close()

    def missing_faces(self, db: Any, face_ids: Sequence[int]) -> list[int]:
        """The ids among these that name no face, ascending."""
        wanted = sorted({int(i) for i in face_ids})
        held: set[int] = set()
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            marks = ",".join(self._mark for _ in chunk)
            held |= {
                int(r[0])
                for r in db.execute(f"SELECT face_id FROM faces WHERE face_id IN ({marks})", chunk).fetchall()
            }
        return [i for i in wanted if i not in held]

    def many(self, db: Any, face_ids: Sequence[int]) -> dict[int, KeptPicture]:
        """The kept pictures of these faces, by id (those without one left out)."""
        wanted = sorted({int(i) for i in face_ids})
        out: dict[int, KeptPicture] = {}
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            marks = ",".join(self._mark for _ in chunk)
            for row in db.execute(
                f"SELECT {_PICTURE_COLUMNS} FROM pictures WHERE face_id IN ({marks})", chunk
            ).fetchall():
                out[int(row[0])] = _picture(row)
        return out

    def one(self, db: Any, face_id: int) -> KeptPicture:
        """A face's kept picture. NotFound for an unknown face or one kept without a picture."""
        row = db.execute(
            self._q(
                "SELECT f.face_id, p.data, p.media_type, p.width, p.height, p.box_x, p.box_y, p.box_w, p.box_h,"
                " p.landmarks"
                " FROM faces f LEFT JOIN pictures p ON p.face_id = f.face_id WHERE f.face_id = ?"
            ),
            (int(face_id),),
        ).fetchone()
        if row is None:
            raise NotFound(f"No face {int(face_id)} in the gallery.")
        if row[1] is None:
            raise NotFound(f"Face {int(face_id)} was enrolled without a kept picture.")
        return _picture(row)

    def source(self, db: Any, face_id: int) -> bytes:
        """The source picture kept with a face; b"" when none is (or there is no such face)."""
        row = db.execute(
            self._q("SELECT data FROM source_pictures WHERE face_id = ?"), (int(face_id),)
        ).fetchone()
        return b"" if row is None else bytes(row[0])

    def without_picture(self, db: Any) -> int:
        """How many faces have no kept picture (enrolled as embeddings, or before pictures were kept)."""
        row = db.execute(
            "SELECT COUNT(*) FROM faces f WHERE NOT EXISTS (SELECT 1 FROM pictures p WHERE p.face_id = f.face_id)"
        ).fetchone()
        return int(row[0])


def new_pictures(face_ids: Sequence[int], pictures: Sequence[KeptPicture | None]) -> dict[int, KeptPicture]:
    """face id -> picture for the new faces that came with one (add_faces' NewFace.picture)."""
    return {int(i): p for i, p in zip(face_ids, pictures, strict=True) if p is not None}


def landmarks_text(points: Sequence[tuple[float, float]]) -> str:
    """The five landmarks as stored: "x y x y ..." ("" for none)."""
    return " ".join(f"{v:.2f}" for point in points for v in point)


def landmarks_of(text: str) -> tuple[tuple[float, float], ...]:
    values = [float(v) for v in text.split()]
    return tuple(zip(values[0::2], values[1::2], strict=True))


def _picture(row: Sequence[Any]) -> KeptPicture:
    _, data, media_type, width, height, bx, by, bw, bh, landmarks = row
    return KeptPicture(
        bytes(data),
        str(media_type),
        int(width),
        int(height),
        (float(bx), float(by), float(bw), float(bh)),
        landmarks_of(str(landmarks or "")),
    )
