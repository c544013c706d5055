from facerec.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FaceInput(_message.Message):
    __slots__ = ("crop", "encoded")
    CROP_FIELD_NUMBER: _ClassVar[int]
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    crop: _common_pb2.RgbImage
    encoded: _common_pb2.Image
    def __init__(self, crop: _Optional[_Union[_common_pb2.RgbImage, _Mapping]] = ..., encoded: _Optional[_Union[_common_pb2.Image, _Mapping]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("faces", "model")
    FACES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[FaceInput]
    model: str
    def __init__(self, faces: _Optional[_Iterable[_Union[FaceInput, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class EmbedResult(_message.Message):
    __slots__ = ("embedding", "error")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    embedding: _common_pb2.Embedding
    error: _common_pb2.Error
    def __init__(self, embedding: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("results", "model")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[EmbedResult]
    model: str
    def __init__(self, results: _Optional[_Iterable[_Union[EmbedResult, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "dimension", "input_size", "preprocessing", "threshold", "threshold_source", "model_calls", "faces_embedded", "max_batch", "runtime", "identification_threshold", "precision", "operating_points", "operating_point", "identification_point", "models")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    FACES_EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    IDENTIFICATION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINTS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINT_FIELD_NUMBER: _ClassVar[int]
    IDENTIFICATION_POINT_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dimension: int
    input_size: int
    preprocessing: str
    threshold: float
    threshold_source: str
    model_calls: int
    faces_embedded: int
    max_batch: int
    runtime: str
    identification_threshold: float
    precision: str
    operating_points: _containers.RepeatedCompositeFieldContainer[_common_pb2.OperatingPoint]
    operating_point: str
    identification_point: _common_pb2.OperatingPoint
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, name: _Optional[str] = ..., dimension: _Optional[int] = ..., input_size: _Optional[int] = ..., preprocessing: _Optional[str] = ..., threshold: _Optional[float] = ..., threshold_source: _Optional[str] = ..., model_calls: _Optional[int] = ..., faces_embedded: _Optional[int] = ..., max_batch: _Optional[int] = ..., runtime: _Optional[str] = ..., identification_threshold: _Optional[float] = ..., precision: _Optional[str] = ..., operating_points: _Optional[_Iterable[_Union[_common_pb2.OperatingPoint, _Mapping]]] = ..., operating_point: _Optional[str] = ..., identification_point: _Optional[_Union[_common_pb2.OperatingPoint, _Mapping]] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
