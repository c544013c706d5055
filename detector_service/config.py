"""The detection service's settings: read once from DETECTOR_* variables, overridable by the same CLI flags."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from facerec.assets import Assets, facerec_home
from facerec.images import ImageLimits
from facerec.settings import RUNTIMES, MiB, ServerOptions, ServerSettings, SettingError, setting

# detector_service.detector.DetectorModel's values, named here so the settings need not load the models.
MODELS = ("mtcnn", "retinaface")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(ServerSettings):
    """Every limit and knob of the detector. Each field is DETECTOR_<FIELD> and --<field-with-dashes>."""

    PREFIX: ClassVar[str] = "DETECTOR_"

    port: int = setting(50051, "port to listen on; 0 picks a free one")
    max_images_per_request: int = setting(16, "pictures one Detect call may carry")
    max_image_bytes: int = setting(20 * MiB, "largest encoded picture")
    max_image_pixels: int = setting(40_000_000, "largest decoded picture (width x height)")
    max_message_bytes: int = setting(64 * MiB, "largest gRPC message")
    max_concurrent_rpcs: int = setting(64, "calls in progress; beyond it RESOURCE_EXHAUSTED")
    # Requests waiting for the model; beyond it Detect answers RESOURCE_EXHAUSTED.
    max_queue: int = setting(32, "requests waiting for the model; beyond it RESOURCE_EXHAUSTED")
    # Pictures per model call, and how long the worker waits for more to fill one. It does not wait by
    # default: a picture's CPU is the same alone or in a batch of 8 (P-Net runs per picture size, R-Net and
    # O-Net in runs of 16 patches either way; `bench.detector --cpu`, 12.3 against 12.3 ms), so a wait only
    # adds latency; pictures that queue while the model is busy still go in together.
    max_batch: int = setting(8, "pictures per model call")
    max_delay_ms: float = setting(0.0, "wait this long for a batch to fill")
    default_min_face_size_px: int = setting(20, "smallest face looked for when a request says 0")
    max_working_side_px: int = setting(
        1600, "pictures are searched at most this large (longer side); larger ones shrunk, boxes mapped back"
    )
    max_pixels_in_flight: int = setting(
        80_000_000, "decoded pixels all calls may hold at once; a call that would pass it is refused"
    )
    retinaface_max_side_px: int = setting(
        1600, "RetinaFace searches pictures at most this large (longer side); larger ones shrunk"
    )
    # The model a request that names none gets: retinaface (the default: half MTCNN's CPU a picture, more of
    # the faces cut by the frame and of turned faces, fewer false faces, and FaceNet separates its crops
    # better: bench/RESULTS.md) or mtcnn (the tutorial's, which finds more 20-40 px faces).
    model: str = setting("retinaface", "the detector model of requests that name none", choices=MODELS)
    intra_op_threads: int = setting(2, "model intra-op threads")
    inter_op_threads: int = setting(1, "model inter-op threads")
    # Share P-Net calls between pictures of different sizes by padding: ~2-3x faster on mixed batches;
    # a few boxes move by a few pixels from mtcnn's (so crops differ from the tutorial's on those).
    pad_sizes: bool = setting(False, "share P-Net calls between picture sizes by padding")
    # The service loads the nets `facerec export` wrote; exporting them at start needs TensorFlow (the
    # export extra): for development only.
    export_at_start: bool = setting(False, "export mtcnn's nets at start when `facerec export` has not")
    # mtcnn's networks on onnxruntime (exported once with tf2onnx, cached in models_dir) or tensorflow.
    runtime: str = setting("onnxruntime", "mtcnn's networks on this runtime", choices=RUNTIMES)
    # RetinaFace's ONNX, as `facerec fetch` writes it; "" = FACEREC_HOME/models/retinaface-mobilenet0.25.onnx.
    retinaface_weights: str = setting("", "RetinaFace's ONNX file (default: where `facerec fetch` puts it)")
    # Where the ONNX exports are cached; "" = FACEREC_HOME/models.
    models_dir: str = setting("", "where the ONNX exports are cached (default FACEREC_HOME/models)")

    @classmethod
    def env_defaults(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        home = facerec_home(environ)
        return {"models_dir": str(home / "models"), "retinaface_weights": str(Assets(home).retinaface_onnx)}

    def check(self) -> None:
        super().check()
        for name in (
            "max_images_per_request",
            "max_image_bytes",
            "max_image_pixels",
            "max_message_bytes",
            "max_queue",
            "max_batch",
            "intra_op_threads",
            "inter_op_threads",
            "max_concurrent_rpcs",
            "max_working_side_px",
            "max_pixels_in_flight",
            "retinaface_max_side_px",
        ):
            if getattr(self, name) < 1:
                raise SettingError(f"{self.key(name)} must be at least 1, not {getattr(self, name)}.")
        if self.default_min_face_size_px < 12:
            raise SettingError(f"{self.key('default_min_face_size_px')} must be at least 12.")
        if self.model not in MODELS:
            raise SettingError(f"{self.key('model')} must be one of {', '.join(MODELS)}, not {self.model!r}.")
        if self.runtime not in RUNTIMES:
            raise SettingError(
                f"{self.key('runtime')} must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}."
            )

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)

    def server_options(self) -> ServerOptions:
        return dataclasses.replace(
            super().server_options(),
            max_concurrent_rpcs=self.max_concurrent_rpcs,
            max_message_bytes=self.max_message_bytes,
        )
