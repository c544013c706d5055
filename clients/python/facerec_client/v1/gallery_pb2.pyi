from facerec_client.v1 import common_pb2 as _common_pb2
from facerec_client.v1 import detector_pb2 as _detector_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENROLL_OUTCOME_UNSPECIFIED: _ClassVar[EnrollOutcome]
    ENROLLED: _ClassVar[EnrollOutcome]
    NO_FACE: _ClassVar[EnrollOutcome]
    MULTIPLE_FACES: _ClassVar[EnrollOutcome]
    DUPLICATE: _ClassVar[EnrollOutcome]
    REJECTED_QUALITY: _ClassVar[EnrollOutcome]
    INVALID: _ClassVar[EnrollOutcome]

class NotIdentifiable(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOT_IDENTIFIABLE_UNSPECIFIED: _ClassVar[NotIdentifiable]
    FACE_TOO_SMALL: _ClassVar[NotIdentifiable]
    DETECTION_TOO_UNSURE: _ClassVar[NotIdentifiable]

class CollectionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLLECTION_STATE_UNSPECIFIED: _ClassVar[CollectionState]
    COLLECTION_READY: _ClassVar[CollectionState]
    COLLECTION_REEMBEDDING: _ClassVar[CollectionState]
ENROLL_OUTCOME_UNSPECIFIED: EnrollOutcome
ENROLLED: EnrollOutcome
NO_FACE: EnrollOutcome
MULTIPLE_FACES: EnrollOutcome
DUPLICATE: EnrollOutcome
REJECTED_QUALITY: EnrollOutcome
INVALID: EnrollOutcome
NOT_IDENTIFIABLE_UNSPECIFIED: NotIdentifiable
FACE_TOO_SMALL: NotIdentifiable
DETECTION_TOO_UNSURE: NotIdentifiable
COLLECTION_STATE_UNSPECIFIED: CollectionState
COLLECTION_READY: CollectionState
COLLECTION_REEMBEDDING: CollectionState

class EnrollRequest(_message.Message):
    __slots__ = ("identity", "images", "embeddings", "detect_options", "strict", "collection")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    DETECT_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    identity: str
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    detect_options: _detector_pb2.DetectOptions
    strict: bool
    collection: str
    def __init__(self, identity: _Optional[str] = ..., images: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., embeddings: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ..., detect_options: _Optional[_Union[_detector_pb2.DetectOptions, _Mapping]] = ..., strict: _Optional[bool] = ..., collection: _Optional[str] = ...) -> None: ...

class EnrollResult(_message.Message):
    __slots__ = ("outcome", "face_id", "box", "error", "faces_found", "duplicate_of")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FACES_FOUND_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    outcome: EnrollOutcome
    face_id: int
    box: _common_pb2.Box
    error: _common_pb2.Error
    faces_found: int
    duplicate_of: str
    def __init__(self, outcome: _Optional[_Union[EnrollOutcome, str]] = ..., face_id: _Optional[int] = ..., box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ..., faces_found: _Optional[int] = ..., duplicate_of: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("identity", "results")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    identity: str
    results: _containers.RepeatedCompositeFieldContainer[EnrollResult]
    def __init__(self, identity: _Optional[str] = ..., results: _Optional[_Iterable[_Union[EnrollResult, _Mapping]]] = ...) -> None: ...

class IdentifyRequest(_message.Message):
    __slots__ = ("image", "embedding", "top_k", "threshold", "detect_options", "operating_point", "collection")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DETECT_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    embedding: _common_pb2.Embedding
    top_k: int
    threshold: float
    detect_options: _detector_pb2.DetectOptions
    operating_point: str
    collection: str
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., embedding: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ..., top_k: _Optional[int] = ..., threshold: _Optional[float] = ..., detect_options: _Optional[_Union[_detector_pb2.DetectOptions, _Mapping]] = ..., operating_point: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("identity", "distance", "face_id")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    identity: str
    distance: float
    face_id: int
    def __init__(self, identity: _Optional[str] = ..., distance: _Optional[float] = ..., face_id: _Optional[int] = ...) -> None: ...

class IdentifiedFace(_message.Message):
    __slots__ = ("box", "identity", "known", "distance", "confidence", "candidates", "landmarks", "detection_confidence", "not_identifiable", "not_identifiable_reason")
    BOX_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    DETECTION_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    NOT_IDENTIFIABLE_FIELD_NUMBER: _ClassVar[int]
    NOT_IDENTIFIABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    box: _common_pb2.Box
    identity: str
    known: bool
    distance: float
    confidence: float
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    landmarks: _common_pb2.Landmarks
    detection_confidence: float
    not_identifiable: NotIdentifiable
    not_identifiable_reason: str
    def __init__(self, box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., identity: _Optional[str] = ..., known: _Optional[bool] = ..., distance: _Optional[float] = ..., confidence: _Optional[float] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., landmarks: _Optional[_Union[_common_pb2.Landmarks, _Mapping]] = ..., detection_confidence: _Optional[float] = ..., not_identifiable: _Optional[_Union[NotIdentifiable, str]] = ..., not_identifiable_reason: _Optional[str] = ...) -> None: ...

class IdentifyResponse(_message.Message):
    __slots__ = ("faces", "threshold", "method", "width", "height", "operating_point", "classifier_stale")
    FACES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINT_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_STALE_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[IdentifiedFace]
    threshold: float
    method: str
    width: int
    height: int
    operating_point: str
    classifier_stale: bool
    def __init__(self, faces: _Optional[_Iterable[_Union[IdentifiedFace, _Mapping]]] = ..., threshold: _Optional[float] = ..., method: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., operating_point: _Optional[str] = ..., classifier_stale: _Optional[bool] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("image_a", "image_b", "identity", "threshold", "operating_point", "collection")
    IMAGE_A_FIELD_NUMBER: _ClassVar[int]
    IMAGE_B_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    image_a: _common_pb2.Image
    image_b: _common_pb2.Image
    identity: str
    threshold: float
    operating_point: str
    collection: str
    def __init__(self, image_a: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., image_b: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., identity: _Optional[str] = ..., threshold: _Optional[float] = ..., operating_point: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("match", "distance", "threshold", "box_a", "box_b", "faces_a", "faces_b", "operating_point")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BOX_A_FIELD_NUMBER: _ClassVar[int]
    BOX_B_FIELD_NUMBER: _ClassVar[int]
    FACES_A_FIELD_NUMBER: _ClassVar[int]
    FACES_B_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINT_FIELD_NUMBER: _ClassVar[int]
    match: bool
    distance: float
    threshold: float
    box_a: _common_pb2.Box
    box_b: _common_pb2.Box
    faces_a: int
    faces_b: int
    operating_point: str
    def __init__(self, match: _Optional[bool] = ..., distance: _Optional[float] = ..., threshold: _Optional[float] = ..., box_a: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., box_b: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., faces_a: _Optional[int] = ..., faces_b: _Optional[int] = ..., operating_point: _Optional[str] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("embedding", "top_k", "collection")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    embedding: _common_pb2.Embedding
    top_k: int
    collection: str
    def __init__(self, embedding: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ..., top_k: _Optional[int] = ..., collection: _Optional[str] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("face_id", "identity", "distance")
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    face_id: int
    identity: str
    distance: float
    def __init__(self, face_id: _Optional[int] = ..., identity: _Optional[str] = ..., distance: _Optional[float] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ...) -> None: ...

class ListIdentitiesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "collection")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    collection: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class IdentitySummary(_message.Message):
    __slots__ = ("identity", "face_count", "created_at_ms")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    FACE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    identity: str
    face_count: int
    created_at_ms: int
    def __init__(self, identity: _Optional[str] = ..., face_count: _Optional[int] = ..., created_at_ms: _Optional[int] = ...) -> None: ...

class ListIdentitiesResponse(_message.Message):
    __slots__ = ("identities", "next_page_token")
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    identities: _containers.RepeatedCompositeFieldContainer[IdentitySummary]
    next_page_token: str
    def __init__(self, identities: _Optional[_Iterable[_Union[IdentitySummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetIdentityRequest(_message.Message):
    __slots__ = ("identity", "include_embeddings", "include_pictures", "collection", "page_size", "page_token")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PICTURES_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    identity: str
    include_embeddings: bool
    include_pictures: bool
    collection: str
    page_size: int
    page_token: str
    def __init__(self, identity: _Optional[str] = ..., include_embeddings: _Optional[bool] = ..., include_pictures: _Optional[bool] = ..., collection: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class FaceRecord(_message.Message):
    __slots__ = ("face_id", "identity", "box", "image_sha256", "created_at_ms", "model", "embedding", "has_picture", "picture")
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    HAS_PICTURE_FIELD_NUMBER: _ClassVar[int]
    PICTURE_FIELD_NUMBER: _ClassVar[int]
    face_id: int
    identity: str
    box: _common_pb2.Box
    image_sha256: str
    created_at_ms: int
    model: str
    embedding: _common_pb2.Embedding
    has_picture: bool
    picture: FacePicture
    def __init__(self, face_id: _Optional[int] = ..., identity: _Optional[str] = ..., box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., image_sha256: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., model: _Optional[str] = ..., embedding: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ..., has_picture: _Optional[bool] = ..., picture: _Optional[_Union[FacePicture, _Mapping]] = ...) -> None: ...

class GetIdentityResponse(_message.Message):
    __slots__ = ("identity", "faces", "next_page_token")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    identity: IdentitySummary
    faces: _containers.RepeatedCompositeFieldContainer[FaceRecord]
    next_page_token: str
    def __init__(self, identity: _Optional[_Union[IdentitySummary, _Mapping]] = ..., faces: _Optional[_Iterable[_Union[FaceRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RemoveIdentityRequest(_message.Message):
    __slots__ = ("identity", "collection")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    identity: str
    collection: str
    def __init__(self, identity: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class RemoveIdentityResponse(_message.Message):
    __slots__ = ("faces_removed",)
    FACES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    faces_removed: int
    def __init__(self, faces_removed: _Optional[int] = ...) -> None: ...

class RemoveFaceRequest(_message.Message):
    __slots__ = ("face_id", "collection")
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    face_id: int
    collection: str
    def __init__(self, face_id: _Optional[int] = ..., collection: _Optional[str] = ...) -> None: ...

class RemoveFaceResponse(_message.Message):
    __slots__ = ("identity",)
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    identity: str
    def __init__(self, identity: _Optional[str] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class TrainResponse(_message.Message):
    __slots__ = ("identities", "faces", "train_accuracy")
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    identities: int
    faces: int
    train_accuracy: float
    def __init__(self, identities: _Optional[int] = ..., faces: _Optional[int] = ..., train_accuracy: _Optional[float] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("identities", "faces", "index_kind", "index_detail", "index_size", "model", "threshold", "threshold_source", "classifier", "classifier_stale", "identification_threshold", "operating_points", "operating_point", "identification_point", "collection", "contract")
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    INDEX_KIND_FIELD_NUMBER: _ClassVar[int]
    INDEX_DETAIL_FIELD_NUMBER: _ClassVar[int]
    INDEX_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_STALE_FIELD_NUMBER: _ClassVar[int]
    IDENTIFICATION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINTS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINT_FIELD_NUMBER: _ClassVar[int]
    IDENTIFICATION_POINT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_FIELD_NUMBER: _ClassVar[int]
    identities: int
    faces: int
    index_kind: str
    index_detail: str
    index_size: int
    model: str
    threshold: float
    threshold_source: str
    classifier: str
    classifier_stale: bool
    identification_threshold: float
    operating_points: _containers.RepeatedCompositeFieldContainer[_common_pb2.OperatingPoint]
    operating_point: str
    identification_point: _common_pb2.OperatingPoint
    collection: str
    contract: EmbeddingContract
    def __init__(self, identities: _Optional[int] = ..., faces: _Optional[int] = ..., index_kind: _Optional[str] = ..., index_detail: _Optional[str] = ..., index_size: _Optional[int] = ..., model: _Optional[str] = ..., threshold: _Optional[float] = ..., threshold_source: _Optional[str] = ..., classifier: _Optional[str] = ..., classifier_stale: _Optional[bool] = ..., identification_threshold: _Optional[float] = ..., operating_points: _Optional[_Iterable[_Union[_common_pb2.OperatingPoint, _Mapping]]] = ..., operating_point: _Optional[str] = ..., identification_point: _Optional[_Union[_common_pb2.OperatingPoint, _Mapping]] = ..., collection: _Optional[str] = ..., contract: _Optional[_Union[EmbeddingContract, _Mapping]] = ...) -> None: ...

class RepresentRequest(_message.Message):
    __slots__ = ("image", "detect_options", "collection")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    DETECT_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    detect_options: _detector_pb2.DetectOptions
    collection: str
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., detect_options: _Optional[_Union[_detector_pb2.DetectOptions, _Mapping]] = ..., collection: _Optional[str] = ...) -> None: ...

class FaceQuality(_message.Message):
    __slots__ = ("size_px", "detection_confidence", "identifiable", "not_identifiable", "not_identifiable_reason")
    SIZE_PX_FIELD_NUMBER: _ClassVar[int]
    DETECTION_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIABLE_FIELD_NUMBER: _ClassVar[int]
    NOT_IDENTIFIABLE_FIELD_NUMBER: _ClassVar[int]
    NOT_IDENTIFIABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    size_px: float
    detection_confidence: float
    identifiable: bool
    not_identifiable: NotIdentifiable
    not_identifiable_reason: str
    def __init__(self, size_px: _Optional[float] = ..., detection_confidence: _Optional[float] = ..., identifiable: _Optional[bool] = ..., not_identifiable: _Optional[_Union[NotIdentifiable, str]] = ..., not_identifiable_reason: _Optional[str] = ...) -> None: ...

class RepresentedFace(_message.Message):
    __slots__ = ("box", "landmarks", "quality", "embedding")
    BOX_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    box: _common_pb2.Box
    landmarks: _common_pb2.Landmarks
    quality: FaceQuality
    embedding: _common_pb2.Embedding
    def __init__(self, box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., landmarks: _Optional[_Union[_common_pb2.Landmarks, _Mapping]] = ..., quality: _Optional[_Union[FaceQuality, _Mapping]] = ..., embedding: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ...) -> None: ...

class RepresentResponse(_message.Message):
    __slots__ = ("faces", "width", "height", "model")
    FACES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[RepresentedFace]
    width: int
    height: int
    model: str
    def __init__(self, faces: _Optional[_Iterable[_Union[RepresentedFace, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class RenameIdentityRequest(_message.Message):
    __slots__ = ("collection", "identity", "new_name")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    collection: str
    identity: str
    new_name: str
    def __init__(self, collection: _Optional[str] = ..., identity: _Optional[str] = ..., new_name: _Optional[str] = ...) -> None: ...

class RenameIdentityResponse(_message.Message):
    __slots__ = ("identity",)
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    identity: IdentitySummary
    def __init__(self, identity: _Optional[_Union[IdentitySummary, _Mapping]] = ...) -> None: ...

class GetFacePictureRequest(_message.Message):
    __slots__ = ("collection", "face_id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    face_id: int
    def __init__(self, collection: _Optional[str] = ..., face_id: _Optional[int] = ...) -> None: ...

class FacePicture(_message.Message):
    __slots__ = ("face_id", "media_type", "data", "width", "height", "box")
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    face_id: int
    media_type: str
    data: bytes
    width: int
    height: int
    box: _common_pb2.Box
    def __init__(self, face_id: _Optional[int] = ..., media_type: _Optional[str] = ..., data: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ...) -> None: ...

class EmbeddingContract(_message.Message):
    __slots__ = ("detector", "alignment", "model")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    detector: str
    alignment: str
    model: str
    def __init__(self, detector: _Optional[str] = ..., alignment: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("name", "contract", "identities", "faces", "faces_without_picture", "state", "operation", "threshold", "identification_threshold", "operating_points", "operating_point", "identification_point", "threshold_source", "keep_source_pictures", "created_at_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    FACES_WITHOUT_PICTURE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    IDENTIFICATION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINTS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINT_FIELD_NUMBER: _ClassVar[int]
    IDENTIFICATION_POINT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    KEEP_SOURCE_PICTURES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    contract: EmbeddingContract
    identities: int
    faces: int
    faces_without_picture: int
    state: CollectionState
    operation: str
    threshold: float
    identification_threshold: float
    operating_points: _containers.RepeatedCompositeFieldContainer[_common_pb2.OperatingPoint]
    operating_point: str
    identification_point: _common_pb2.OperatingPoint
    threshold_source: str
    keep_source_pictures: bool
    created_at_ms: int
    def __init__(self, name: _Optional[str] = ..., contract: _Optional[_Union[EmbeddingContract, _Mapping]] = ..., identities: _Optional[int] = ..., faces: _Optional[int] = ..., faces_without_picture: _Optional[int] = ..., state: _Optional[_Union[CollectionState, str]] = ..., operation: _Optional[str] = ..., threshold: _Optional[float] = ..., identification_threshold: _Optional[float] = ..., operating_points: _Optional[_Iterable[_Union[_common_pb2.OperatingPoint, _Mapping]]] = ..., operating_point: _Optional[str] = ..., identification_point: _Optional[_Union[_common_pb2.OperatingPoint, _Mapping]] = ..., threshold_source: _Optional[str] = ..., keep_source_pictures: _Optional[bool] = ..., created_at_ms: _Optional[int] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "contract", "keep_source_pictures")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_FIELD_NUMBER: _ClassVar[int]
    KEEP_SOURCE_PICTURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    contract: EmbeddingContract
    keep_source_pictures: bool
    def __init__(self, name: _Optional[str] = ..., contract: _Optional[_Union[EmbeddingContract, _Mapping]] = ..., keep_source_pictures: _Optional[bool] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections", "next_page_token")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    next_page_token: str
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCollectionResponse(_message.Message):
    __slots__ = ("identities_removed", "faces_removed")
    IDENTITIES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    FACES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    identities_removed: int
    faces_removed: int
    def __init__(self, identities_removed: _Optional[int] = ..., faces_removed: _Optional[int] = ...) -> None: ...

class SetOperatingPointsRequest(_message.Message):
    __slots__ = ("collection", "model", "operating_points", "operating_point", "identification_point")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINTS_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINT_FIELD_NUMBER: _ClassVar[int]
    IDENTIFICATION_POINT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    model: str
    operating_points: _containers.RepeatedCompositeFieldContainer[_common_pb2.OperatingPoint]
    operating_point: str
    identification_point: _common_pb2.OperatingPoint
    def __init__(self, collection: _Optional[str] = ..., model: _Optional[str] = ..., operating_points: _Optional[_Iterable[_Union[_common_pb2.OperatingPoint, _Mapping]]] = ..., operating_point: _Optional[str] = ..., identification_point: _Optional[_Union[_common_pb2.OperatingPoint, _Mapping]] = ...) -> None: ...

class ReembedRequest(_message.Message):
    __slots__ = ("collection", "contract", "drop_failed")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_FIELD_NUMBER: _ClassVar[int]
    DROP_FAILED_FIELD_NUMBER: _ClassVar[int]
    collection: str
    contract: EmbeddingContract
    drop_failed: bool
    def __init__(self, collection: _Optional[str] = ..., contract: _Optional[_Union[EmbeddingContract, _Mapping]] = ..., drop_failed: _Optional[bool] = ...) -> None: ...

class FailedFace(_message.Message):
    __slots__ = ("face_id", "identity", "reason")
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    face_id: int
    identity: str
    reason: str
    def __init__(self, face_id: _Optional[int] = ..., identity: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class OperationMetadata(_message.Message):
    __slots__ = ("kind", "collection", "source", "target", "faces_total", "faces_done", "stage", "failed_faces", "created_at_ms", "updated_at_ms")
    KIND_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    FACES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FACES_DONE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FACES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    collection: str
    source: EmbeddingContract
    target: EmbeddingContract
    faces_total: int
    faces_done: int
    stage: str
    failed_faces: _containers.RepeatedCompositeFieldContainer[FailedFace]
    created_at_ms: int
    updated_at_ms: int
    def __init__(self, kind: _Optional[str] = ..., collection: _Optional[str] = ..., source: _Optional[_Union[EmbeddingContract, _Mapping]] = ..., target: _Optional[_Union[EmbeddingContract, _Mapping]] = ..., faces_total: _Optional[int] = ..., faces_done: _Optional[int] = ..., stage: _Optional[str] = ..., failed_faces: _Optional[_Iterable[_Union[FailedFace, _Mapping]]] = ..., created_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("name", "metadata", "done", "error", "response")
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    name: str
    metadata: OperationMetadata
    done: bool
    error: _common_pb2.Error
    response: Collection
    def __init__(self, name: _Optional[str] = ..., metadata: _Optional[_Union[OperationMetadata, _Mapping]] = ..., done: _Optional[bool] = ..., error: _Optional[_Union[_common_pb2.Error, _Mapping]] = ..., response: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class GetOperationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
