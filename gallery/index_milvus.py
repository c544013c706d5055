"""The gallery's index in Milvus, shared by every replica: an adapter over the network (like clients.py),
a gallery.ports.VectorIndex as the in-process FAISS index (gallery/index.py) is.

The collection holds face_id (primary key), identity, model and the embedding. The store stays the
truth: the gallery writes Milvus after each store commit, and a reconciler (gallery/reconcile.py) brings
the collection level with the store after a crash or an outage. Searches use the inner product on unit
vectors, turned into euclidean distances as FAISS's are. A Milvus that cannot be reached makes searches
raise Unavailable (one sentence); writes it misses are left to the reconciler.

facerec collections in Milvus: one Milvus collection per facerec collection GENERATION, named by
collection_name() from the deployment's base name (GALLERY_INDEX_COLLECTION), the facerec collection's id
and its generation (`facerec_faces_c2_g1`), never from the user's name (a rename changes nothing here,
and no user string reaches Milvus's naming rules). Generation 1 of the default collection keeps the base
name itself, so an existing deployment keeps its index. Not one Milvus collection with a partition key,
because:
- isolation by construction: a search names its Milvus collection and cannot see another's vectors; with
  a partition key every search, count and id listing would have to carry the right filter, and one that
  forgot it would answer from every collection.
- a re-embed builds generation + 1 beside the serving one, possibly with another model and another
  dimension: a Milvus collection has one schema, one vector dimension, so a partition key could not hold
  both generations.
- deleting a collection or dropping the old generation after a re-embed is one drop_collection (vectors
  gone at once), where a partition key needs a delete by expression, tombstones and compaction.
- search cost: a search scans only its own collection's segments (1,000 faces stay 1,000 faces however
  many collections there are: 20 of them cost an Identify nothing at p50 on the Milvus standalone server,
  bench/collections.py --milvus); a partition key hashes collections into a fixed number of partitions
  (64 by default), so with 100 collections a search filters a partition shared by several of them.
- limits: Milvus allows 65,536 collections (maxCollectionNum, one shard each) against a partition key's
  at most 4,096 partitions (maxPartitionNum). The price: each loaded collection holds ~6 MB on the server
  (measured on the standalone server at 1,000 faces: 254 MB with one, 370 MB with 21), and creating one
  takes ~4 s (schema, index, load, the fill from the store), paid by CreateCollection and at a re-embed's
  switch (the old generation serves meanwhile); fine for the hundreds of collections a deployment has,
  not for one per end user.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from facerec.errors import InvalidInput, Precondition, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# Rows per write and per page when listing every id: well below Milvus's 64 MiB message limit at d=128.
_BATCH = 4096
# How long a count of the collection is reused (other replicas' writes show in it after this long).
COUNT_TTL_S = 1.0
# Searches and counts read at Session consistency, except the first read after this index wrote, which
# is Strong so that its own writes (deletes included, which pymilvus 3's Session does not track) are seen.
# Other replicas' writes show as soon as Milvus's query node has them (milliseconds). A Strong read waits
# for Milvus's next time tick: ~200 ms a search on a Milvus standalone server, against ~2 ms at Session
# (measured here, bench/RESULTS.md), and the gallery searches at every Identify.
READ_CONSISTENCY = "Session"
# The base name of the Milvus collections (GALLERY_INDEX_COLLECTION's default): generation 1 of the default
# collection's own, the prefix of every other's.
BASE_NAME = "facerec_faces"
# The default facerec collection's id and first generation (gallery/namespaces.py numbers them alike).
_DEFAULT_ID, _FIRST_GENERATION = 1, 1


def collection_name(base: str, collection_id: int, generation: int) -> str:
    """The Milvus collection of one facerec collection generation: `base` itself for the default
    collection's first generation (the index an existing deployment has), `<base>_c<ID>_g<GEN>` otherwise.
    Derived from ids only, so user-chosen collection names never reach Milvus."""
    if collection_id < 1 or generation < 1:
        raise InvalidInput("A collection id and a generation are at least 1.")
    if (collection_id, generation) == (_DEFAULT_ID, _FIRST_GENERATION):
        return base
    return f"{base}_c{collection_id}_g{generation}"


def generation_of(base: str, name: str) -> tuple[int, int] | None:
    """The (collection id, generation) whose collection_name(base, ...) is name; None for another name."""
    if name == base:
        return _DEFAULT_ID, _FIRST_GENERATION
    found = re.fullmatch(rf"{re.escape(base)}_c([1-9][0-9]*)_g([1-9][0-9]*)", name)
    return None if found is None else (int(found[1]), int(found[2]))


@dataclass(frozen=True)
class MilvusSettings:
    """Where the shared index lives. uri http(s)://host:19530 (https = TLS); token "user:password" or an
    API key; index_type as Milvus names it (AUTOINDEX lets Milvus choose; FLAT is exact)."""

    uri: str
    token: str = ""
    collection: str = BASE_NAME
    index_type: str = "AUTOINDEX"
    timeout_s: float = 10.0
    tls_ca: str = ""

    def __post_init__(self) -> None:
        if not self.uri.startswith(("http://", "https://", "tcp://")):
            raise InvalidInput(f"The Milvus URI must start with http:// or https://, not {self.uri!r}.")


def _dimension(description: dict[str, Any]) -> int:
    """The embedding field's dimension in pymilvus's describe_collection answer (0 when it has none)."""
    for field in description.get("fields", []):
        if field.get("name") == "embedding":
            return int(field.get("params", {}).get("dim", 0))
    return 0


def _connect(settings: MilvusSettings) -> Any:
    """A pymilvus MilvusClient for settings. Imported here: pymilvus (and the grpc under it) loads only for
    a gallery configured for Milvus (the `milvus` extra)."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise InvalidInput("A Milvus index needs its client: pip install 'facerec[milvus]'.") from None
    extra: dict[str, Any] = {"server_pem_path": settings.tls_ca} if settings.tls_ca else {}
    # Tried again within timeout_s: a connection the server has just closed (milvus-lite sends GOAWAY,
    # too_many_pings, to a process whose clients have pinged it for long) fails the first attempt only.
    deadline = time.monotonic() + settings.timeout_s
    while True:
        try:
            return MilvusClient(uri=settings.uri, token=settings.token, timeout=settings.timeout_s, **extra)
        except Exception as exc:
            if time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            log.warning("Milvus at %s: %s", settings.uri, exc)
            raise Unavailable(f"The Milvus index at {settings.uri} cannot be reached.") from None


def drop_collection(settings: MilvusSettings) -> bool:
    """Drops the Milvus collection settings.collection (a deleted facerec collection's, or the old
    generation's after a re-embed): its vectors are gone in one call. True when it existed; dropping a
    missing one does nothing, so a drop interrupted and run again finishes. Unavailable when Milvus cannot
    be reached."""

    def drop(client: Any) -> bool:
        if not client.has_collection(settings.collection):
            return False
        client.drop_collection(settings.collection)
        log.info("dropped the Milvus collection %s", settings.collection)
        return True

    return _on_milvus(settings, drop)


def list_collections(settings: MilvusSettings) -> list[str]:
    """The names of every collection on the Milvus of settings. Unavailable when it cannot be reached."""
    return _on_milvus(settings, lambda client: [str(name) for name in client.list_collections()])


def _on_milvus(settings: MilvusSettings, work: Callable[[Any], T]) -> T:
    """work(client) on a client of its own, closed after; any failure of Milvus is Unavailable."""
    client = _connect(settings)
    try:
        return work(client)
    except Exception as exc:
        log.warning("Milvus at %s: %s", settings.uri, exc)
        raise Unavailable(f"The Milvus index at {settings.uri} cannot be reached.") from None
    finally:
        client.close()


def _distance(ip: float) -> float:
    # Unit vectors: |a - b|^2 = 2 - 2 a.b; clipped because rounding can push a.b past 1.
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * ip)))


class MilvusIndex:
    """A gallery.ports.VectorIndex over a Milvus collection. identities_of maps face ids to identities (the
    store's), so writes carry the identity without the gallery passing it. How it searches (exact or
    approximate, with which parameters) is the collection's index_type, Milvus's business."""

    kind = "milvus"

    def __init__(
        self,
        settings: MilvusSettings,
        model: str,
        dim: int,
        identities_of: Callable[[Sequence[int]], dict[int, str]],
    ) -> None:
        self._client = _connect(settings)
        self._settings = settings
        self._model = model
        self._dim = dim
        self._identities_of = identities_of
        self._lock = threading.Lock()
        self.missed_writes = 0  # writes that failed since the last reconciliation
        self._count = (0, -COUNT_TTL_S)  # (faces, when counted): see ntotal
        # Writes this index made, and how many of them a Strong read that started after them has covered:
        # reads are Strong until one has (see READ_CONSISTENCY).
        self._writes = 0
        self._covered = 0
        try:
            found = self._ensure_collection()
        except Exception as exc:
            raise self._unavailable(exc) from None
        if found != dim:
            self.close()
            raise Precondition(
                f"The Milvus collection {settings.collection} holds {found}-dimensional vectors, not {dim}."
            )

    def _unavailable(self, exc: BaseException) -> Unavailable:
        log.warning("Milvus at %s: %s", self._settings.uri, exc)
        return Unavailable(f"The Milvus index at {self._settings.uri} cannot be reached.")

    def _call(self, work: Callable[[], T]) -> T:
        """Runs one Milvus call; a collection left released (Milvus restarted) is loaded and the call
        retried once. Anything else is Unavailable."""
        for attempt in (0, 1):
            try:
                return work()
            except Exception as exc:
                released = "released" in str(exc) or "not loaded" in str(exc)
                if attempt == 0 and released:
                    try:
                        self._client.load_collection(self._settings.collection)
                        continue
                    except Exception as again:
                        raise self._unavailable(again) from None
                raise self._unavailable(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _ensure_collection(self) -> int:
        """Creates the collection when missing, loads it; returns the dimension of its vectors. Another
        replica opening the same new generation at the same moment may be halfway through creating it
        (collection made, index or load not yet): tried again until timeout_s."""
        deadline = time.monotonic() + self._settings.timeout_s
        while True:
            try:
                return self._open_or_create()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _open_or_create(self) -> int:
        from pymilvus import DataType

        name = self._settings.collection
        if self._client.has_collection(name):
            self._client.load_collection(name)
            return _dimension(self._client.describe_collection(name))
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("face_id", DataType.INT64, is_primary=True)
        schema.add_field("identity", DataType.VARCHAR, max_length=1024)
        schema.add_field("model", DataType.VARCHAR, max_length=256)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self._dim)
        params = self._client.prepare_index_params()
        params.add_index(field_name="embedding", index_type=self._settings.index_type, metric_type="IP")
        # Strong by default: the reconciler's listing sees every write acknowledged before it, from any
        # replica. Searches and counts choose per read (READ_CONSISTENCY).
        try:
            self._client.create_collection(
                name, schema=schema, index_params=params, consistency_level="Strong"
            )
        except Exception:
            # Another replica opening the same new generation created it first (milvus-lite refuses the
            # second create; a Milvus server accepts an identical one): use theirs.
            if not self._client.has_collection(name):
                raise
            self._client.load_collection(name)
            return _dimension(self._client.describe_collection(name))
        log.info("created the Milvus collection %s (%s, inner product)", name, self._settings.index_type)
        return self._dim

    def describe_index(self) -> dict[str, Any]:
        """What Milvus reports about the vector index (its type may differ from the one asked for)."""
        return dict(self._client.describe_index(self._settings.collection, "embedding"))

    # -- changes ----------------------------------------------------------------------------------

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Writes faces (ids (n,), unit vectors (n, dim)); an unreachable Milvus is left to the reconciler."""
        i = np.asarray(ids, dtype=np.int64).reshape(-1)
        x = np.asarray(vectors, dtype=np.float32).reshape(len(i), self._dim) if len(i) else vectors
        if not len(i):
            return
        try:
            owners = self._identities_of(i.tolist())
            rows = [
                {"face_id": int(f), "identity": owners[int(f)], "model": self._model, "embedding": v.tolist()}
                for f, v in zip(i, x, strict=True)
                if int(f) in owners  # removed from the store meanwhile: nothing to write
            ]
            for start in range(0, len(rows), _BATCH):
                batch = rows[start : start + _BATCH]
                self._call(partial(self._client.upsert, self._settings.collection, batch))
        except Exception as exc:
            self.missed_writes += 1
            log.warning("Milvus write of %s faces missed (the reconciler will redo it): %s", len(i), exc)
        finally:
            self._wrote()

    def remove(self, ids: Sequence[int]) -> int:
        """Deletes these ids; returns how many were asked (Milvus does not say how many existed)."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return 0
        try:
            for start in range(0, len(wanted), _BATCH):
                batch = wanted[start : start + _BATCH]
                self._call(partial(self._client.delete, self._settings.collection, ids=batch))
        except Exception as exc:
            self.missed_writes += 1
            log.warning(
                "Milvus delete of %s faces missed (the reconciler will redo it): %s", len(wanted), exc
            )
        finally:
            self._wrote()
        return len(wanted)

    def _wrote(self) -> None:
        """A write ended (applied, partly applied or missed): the count is stale, the next read Strong."""
        with self._lock:
            self._count = (0, -COUNT_TTL_S)
            self._writes += 1

    def _read(self, work: Callable[[str], T]) -> T:
        """Runs a read at the consistency READ_CONSISTENCY describes (work takes the level)."""
        with self._lock:
            writes = self._writes
            level = "Strong" if writes > self._covered else READ_CONSISTENCY
        result = self._call(lambda: work(level))
        if level == "Strong":
            with self._lock:
                self._covered = max(self._covered, writes)
        return result

    # -- queries ----------------------------------------------------------------------------------

    def search(self, xq: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The k nearest faces of each query: D (m, k) float32 euclidean distances ascending, I (m, k)
        int64 face ids, padded with +inf / -1."""
        if k < 1:
            raise InvalidInput("k must be at least 1.")
        x = np.asarray(xq, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self._dim:
            raise InvalidInput(f"Queries must be (m, {self._dim}) float32, not {x.shape}.")
        hits = self._read(
            lambda level: self._client.search(
                self._settings.collection,
                data=x.tolist(),
                limit=int(k),
                anns_field="embedding",
                search_params={"metric_type": "IP"},
                output_fields=["face_id"],
                consistency_level=level,
            )
        )
        dist = np.full((len(x), k), np.inf, dtype=np.float32)
        ids = np.full((len(x), k), -1, dtype=np.int64)
        for row, found in enumerate(hits):
            for col, hit in enumerate(list(found)[:k]):
                ids[row, col] = int(hit["face_id"] if "face_id" in hit else hit["id"])
                dist[row, col] = _distance(float(hit["distance"]))
        order = np.argsort(dist, axis=1, kind="stable")
        return np.take_along_axis(dist, order, 1), np.take_along_axis(ids, order, 1)

    def all_ids(self) -> NDArray[np.int64]:
        """Every face id in the collection, ascending (paged, so millions do not make one message)."""

        def page_through() -> list[int]:
            iterator = self._client.query_iterator(
                self._settings.collection, batch_size=_BATCH, filter="", output_fields=["face_id"]
            )
            out: list[int] = []
            try:
                while batch := iterator.next():
                    out.extend(int(r["face_id"]) for r in batch)
            finally:
                iterator.close()
            return out

        return np.array(sorted(self._call(page_through)), dtype=np.int64)

    # -- description ------------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        """Faces in the collection, counted at most every COUNT_TTL_S (a count scans the collection; the
        gallery asks at every Identify). Unavailable when Milvus cannot be reached."""
        with self._lock:
            value, at = self._count
            if time.monotonic() - at < COUNT_TTL_S:
                return value
        rows = self._read(
            lambda level: self._client.query(
                self._settings.collection, output_fields=["count(*)"], consistency_level=level
            )
        )
        value = int(rows[0]["count(*)"])
        with self._lock:
            self._count = (value, time.monotonic())
        return value

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def detail(self) -> str:
        return f"collection={self._settings.collection} at {self._settings.uri}"

    def close(self) -> None:
        try:
            self._client.close()
        except Exception as exc:  # closing a dead connection: nothing left to do
            log.debug("closing the Milvus client: %s", exc)
