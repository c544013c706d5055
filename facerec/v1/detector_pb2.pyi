from facerec.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Alignment(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALIGNMENT_UNSPECIFIED: _ClassVar[Alignment]
    ALIGNMENT_BOX: _ClassVar[Alignment]
    ALIGNMENT_SIMILARITY: _ClassVar[Alignment]
ALIGNMENT_UNSPECIFIED: Alignment
ALIGNMENT_BOX: Alignment
ALIGNMENT_SIMILARITY: Alignment

class DetectOptions(_message.Message):
    __slots__ = ("min_face_size_px", "min_confidence", "max_faces", "alignment", "return_crops", "model")
    MIN_FACE_SIZE_PX_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MAX_FACES_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    RETURN_CROPS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    min_face_size_px: int
    min_confidence: float
    max_faces: int
    alignment: Alignment
    return_crops: bool
    model: str
    def __init__(self, min_face_size_px: _Optional[int] = ..., min_confidence: _Optional[float] = ..., max_faces: _Optional[int] = ..., alignment: _Optional[_Union[Alignment, str]] = ..., return_crops: _Optional[bool] = ..., model: _Optional[str] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("images", "options")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    options: DetectOptions
    def __init__(self, images: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., options: _Optional[_Union[DetectOptions, _Mapping]] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "confidence", "landmarks", "crop")
    BOX_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    box: _common_pb2.Box
    confidence: float
    landmarks: _common_pb2.Landmarks
    crop: _common_pb2.RgbImage
    def __init__(self, box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., confidence: _Optional[float] = ..., landmarks: _Optional[_Union[_common_pb2.Landmarks, _Mapping]] = ..., crop: _Optional[_Union[_common_pb2.RgbImage, _Mapping]] = ...) -> None: ...

class ImageResult(_message.Message):
    __slots__ = ("width", "height", "faces", "error")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    error: _common_pb2.Error
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ImageResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ImageResult, _Mapping]]] = ...) -> None: ...
