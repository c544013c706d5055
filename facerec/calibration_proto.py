"""The calibration's operating points as protobuf messages, for the embedder's and the gallery's servicers."""

from __future__ import annotations

from facerec.calibration import OperatingPoint
from facerec.v1 import common_pb2


def point_proto(p: OperatingPoint) -> common_pb2.OperatingPoint:
    return common_pb2.OperatingPoint(
        name=p.name,
        threshold=p.threshold,
        far=p.far,
        far_upper=p.far_upper,
        tar=p.tar,
        genuine_pairs=p.genuine_pairs,
        impostor_pairs=p.impostor_pairs,
    )
