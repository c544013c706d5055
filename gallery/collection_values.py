"""The values a collection is made of, checked: its name (the identity-name rules, and none of the tokens
file's syntax) and its operating points as calibration JSON. Pure: no grpc."""

from __future__ import annotations

import json
from collections.abc import Sequence

from facerec.calibration import Calibration, OperatingPoint
from facerec.errors import InvalidInput
from gallery import validation

DETECTORS = ("mtcnn", "retinaface")
ALIGNMENTS = ("box", "similarity")
# Characters a collection name may not hold beyond the identity-name rules: the tokens file
# (facerec.security) lists collections separated by commas, ends an entry at ; and a comment at #,
# and * means every collection.
_RESERVED = ",;#*"


def collection_name(name: str) -> str:
    """A name for a new collection: the identity-name rules (gallery.validation.new_identity) and none of
    , ; # * (the tokens file's syntax). InvalidInput in one sentence naming the field."""
    try:
        name = validation.new_identity(name)
    except InvalidInput as exc:
        raise InvalidInput(str(exc).replace("The identity", "The collection name"), field="name") from None
    bad = sorted({ch for ch in name if ch in _RESERVED})
    if bad:
        raise InvalidInput(
            f"The collection name {name!r} holds {' '.join(bad)}; those characters are reserved.",
            field="name",
        )
    return name


def points_text(
    model: str,
    points: Sequence[OperatingPoint],
    operating_point: str,
    identification: OperatingPoint | None,
    current: Calibration,
) -> str:
    """A collection's operating points as calibration JSON: `points` with `operating_point` as Verify's
    default, `identification` as Identify's (None keeps the current one). InvalidInput for unusable ones."""
    if not points:
        raise InvalidInput("Give at least one operating point.", field="operating_points")
    names = [p.name for p in points]
    if len(set(names)) != len(names) or not all(names):
        raise InvalidInput("Every operating point needs a name of its own.", field="operating_points")
    for p in [*points, *([identification] if identification else [])]:
        if not 0 < p.threshold < 1.4142:
            raise InvalidInput(
                f"Operating point {p.name!r} has threshold {p.threshold}; it must lie in (0, 1.4142).",
                field="operating_points",
            )
    chosen = next((p for p in points if p.name == operating_point), None)
    if chosen is None:
        raise InvalidInput(
            f"The default operating point {operating_point!r} is not among the points given.",
            field="operating_point",
        )
    ident = identification or current.identification
    entry: dict[str, object] = {
        "threshold": chosen.threshold,
        "identification_threshold": ident.threshold if ident else current.identification_threshold,
        "points": [p.as_dict() for p in points],
        "operating_point": chosen.name,
    }
    if ident is not None:
        entry["identification_point"] = ident.as_dict()
    return json.dumps({"models": {model: entry}}, sort_keys=True)
