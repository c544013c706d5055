"""The models one embedder serves (Triton's model repository idea): each loaded once, each behind its own
batcher with its own inference thread, so a batch never mixes models and a request names the one it wants.
Pure: no grpc.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

from embedding_service.batcher import EmbeddingBatcher
from embedding_service.config import MODEL_PRECISIONS, Settings
from embedding_service.embedder import Embedder
from facerec.errors import InvalidInput

log = logging.getLogger(__name__)


def load_embedders(settings: Settings) -> list[Embedder]:
    """The embedders of settings.model_names, the default first, each model once.

    The guarded int8 model falls back to fp32 where its guard refused it (as a single-model embedder
    always did), and the tensorflow runtime has no int8 at all: a model that comes out as one already
    loaded is served once, under the name its vectors really have.
    """
    precisions = [
        MODEL_PRECISIONS[name] if settings.runtime == "onnxruntime" else "fp32"
        for name in settings.model_names
    ]
    embedders: list[Embedder] = []
    for precision in dict.fromkeys(precisions):
        embedder = Embedder.load(dataclasses.replace(settings, precision=precision))
        if any(e.name == embedder.name for e in embedders):
            log.warning("the %s model is served as %s, already loaded", precision, embedder.name)
            continue
        embedders.append(embedder)
    return embedders


class ModelRepository:
    """The served models by name, each behind its batcher; the first is the default (requests naming none)."""

    def __init__(self, batchers: Sequence[EmbeddingBatcher]) -> None:
        if not batchers:
            raise ValueError("an embedder serves at least one model")
        self.batchers = list(batchers)
        self._by_name = {b.embedder.name: b for b in self.batchers}
        if len(self._by_name) != len(self.batchers):
            raise ValueError("two batchers serve the same model")

    @classmethod
    def from_settings(
        cls,
        embedders: Sequence[Embedder],
        settings: Settings,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> ModelRepository:
        return cls([EmbeddingBatcher.from_settings(e, settings, on_batch=on_batch) for e in embedders])

    @property
    def default(self) -> EmbeddingBatcher:
        return self.batchers[0]

    @property
    def names(self) -> list[str]:
        """The served models' names, the default first."""
        return [b.embedder.name for b in self.batchers]

    def get(self, model: str) -> EmbeddingBatcher:
        """The batcher of `model` ("" = the default). InvalidInput naming the served ones for any other name."""
        if not model:
            return self.default
        batcher = self._by_name.get(model)
        if batcher is None:
            raise InvalidInput(
                f"The embedder serves no model named {model!r}; it serves {', '.join(self.names)}.",
                field="model",
            )
        return batcher

    def queue_depth(self) -> int:
        return sum(b.queue_depth() for b in self.batchers)

    def warm_up(self) -> None:
        for batcher in self.batchers:
            batcher.warm_up()

    def close(self) -> None:
        for batcher in self.batchers:
            batcher.close()
