"""Annotated pictures: every label inside the picture and clear of the others, text in proportion."""

from __future__ import annotations

import numpy as np

from facerec.v1 import common_pb2, gallery_pb2
from facerec_app.annotate import annotate, line_px, overlaps, place_labels, text_px
from facerec_client import Face


def face(x: float, y: float, w: float, h: float, name: str = "", small: bool = False) -> Face:
    """A face of an Identify answer as the CLI has it (facerec_client's, read from the message)."""
    point = common_pb2.Point(x=x + w / 2, y=y + h / 2)
    message = gallery_pb2.IdentifiedFace(
        box=common_pb2.Box(x=x, y=y, width=w, height=h),
        identity=name,
        known=bool(name),
        distance=0.61,
        landmarks=common_pb2.Landmarks(
            left_eye=point, right_eye=point, nose=point, mouth_left=point, mouth_right=point
        ),
        not_identifiable=gallery_pb2.FACE_TOO_SMALL if small else gallery_pb2.NOT_IDENTIFIABLE_UNSPECIFIED,
    )
    return Face.of(message)


def test_labels_stay_inside_the_picture_and_never_overlap() -> None:
    picture = (300, 200)
    # A crowd at the top edge, side by side, and one face at the right edge: the labels' first
    # choice (above each box) is off the picture or on a neighbour's label.
    boxes = [
        (5.0, 0.0, 60.0, 40.0),
        (50.0, 2.0, 110.0, 44.0),
        (95.0, 4.0, 150.0, 40.0),
        (280.0, 150.0, 300.0, 200.0),
    ]
    sizes = [(120.0, 18.0)] * len(boxes)
    placed = place_labels(sizes, boxes, picture)
    for rect in placed:
        assert 0 <= rect[0] and rect[2] <= picture[0] and 0 <= rect[1] and rect[3] <= picture[1], rect
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            assert not overlaps(a, b), (a, b)
    assert placed[3][1] == 150 - 18  # a free place above its box is kept


def test_annotated_text_is_in_proportion_and_landmark_dots_smaller_than_it() -> None:
    assert text_px((200, 160)) == 12 and text_px((2000, 1500)) == 68
    assert line_px((2000, 1500)) == 6
    rgb = np.zeros((1500, 2000, 3), np.uint8)
    drawn = annotate(rgb, [face(100, 0, 600, 700, "madonna"), face(1900, 1400, 100, 100, small=True)])
    assert drawn.size == (2000, 1500)
    pixels = np.asarray(drawn)
    green = (pixels == (40, 200, 80)).all(axis=2)
    label_rows = np.flatnonzero(green[:300].sum(axis=1) > 300)  # the label band above the box's top
    assert label_rows.max() - label_rows.min() + 1 >= text_px((2000, 1500))
    dot = np.flatnonzero(green[350, 300:500])  # the landmark dot at the face's centre (400, 350)
    assert 3 <= dot.size < text_px((2000, 1500)) / 2
    grey = np.argwhere((pixels == (150, 150, 150)).all(axis=2))
    assert grey.size and grey[:, 0].max() < 1500 and grey[:, 1].max() < 2000
    # The edge face's label lies inside the picture, left of and above its box's corner.
    assert grey[:, 1].min() < 1900
