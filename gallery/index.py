"""The gallery's FAISS index over unit vectors: exact while small, IVF once large, derived from the store."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import faiss
import numpy as np
from numpy.typing import NDArray

from facerec.errors import InvalidInput
from facerec.files import atomic_write
from facerec.integrity import sha256_file

log = logging.getLogger(__name__)

# nlist = NLIST_PER_SQRT_N * sqrt(N): the usual 4..16·sqrt(N); the low end keeps lists long enough that a
# modest nprobe reaches a query's true neighbour on face-like (low intrinsic dimension) data.
NLIST_PER_SQRT_N = 4
# faiss warns below 39 training points per centroid; k-means on fewer gives poor lists.
MIN_POINTS_PER_LIST = 39
# k-means sees at most this many points per centroid and runs this many iterations: it bounds the build
# at 1M vectors to tens of seconds on two cores, and more points or iterations barely move recall.
TRAIN_POINTS_PER_LIST = 64
TRAIN_ITERATIONS = 10
# An IVF index retrains itself from its own vectors once it has grown this many times past its training size.
RETRAIN_GROWTH = 4


def nlist_for(n: int) -> int:
    """The number of IVF lists for n vectors."""
    return max(1, min(int(NLIST_PER_SQRT_N * math.sqrt(n)), n // MIN_POINTS_PER_LIST))


def default_nprobe(nlist: int) -> int:
    """Lists probed per query by default: a tenth of the lists, at least 16 (all of them when fewer).

    Measured on face-like synthetic galleries (bench/gallery_scale.py): a tenth gives recall@1 >= 0.99
    against exact search at 100k-1M while scanning ~10% of the vectors; a sixteenth gives ~0.98.
    """
    return min(nlist, max(16, nlist // 10))


class _RWLock:
    """Many readers (searches) or one writer (add/remove/retrain). Writers are not starved: a waiting
    writer stops new readers from entering."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def _to_distances(ip: NDArray[np.float32], ids: NDArray[np.int64]) -> NDArray[np.float32]:
    """Inner products of unit vectors -> euclidean distances; +inf where faiss padded (id -1)."""
    padded = ids < 0
    # faiss pads with -FLT_MAX, which 2 - 2*ip would overflow: take those out before the arithmetic.
    d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * np.where(padded, 0.0, ip))).astype(np.float32)
    d[padded] = np.inf
    return d


class FaceIndex:
    """Nearest enrolled faces by inner product over unit vectors; distances returned as euclidean.

    Exact (IndexIDMap2 over IndexFlatIP) below `ivf_min_size` vectors, IndexIVFFlat (spherical k-means,
    nlist = 4·sqrt(N)) at or above it. The switch happens on its own: an `add` that takes the flat index
    to ivf_min_size retrains it as IVF from its own vectors, and an IVF index that has grown 4× past its
    training size retrains likewise (both under the write lock: searches wait, ~1 s at 50k, tens of
    seconds at 1M). Thread-safe: searches run concurrently, add/remove exclusively.

    IVF tuning is set here, not per search (a gallery.ports.VectorIndex): nprobe, the lists probed per
    query (default: default_nprobe), and exact_beyond: where a query's approximate best distance is above
    it, that query is searched again exactly, so a face within that distance the probe missed is still
    found (the gallery gives Identify's threshold).
    """

    def __init__(
        self,
        dim: int = 128,
        ivf_min_size: int = 50_000,
        nprobe: int | None = None,
        exact_beyond: float | None = None,
    ) -> None:
        if dim <= 0:
            raise InvalidInput("The index dimension must be positive.")
        self._dim = dim
        self._ivf_min_size = ivf_min_size
        self._nprobe_setting = nprobe
        self.exact_beyond = exact_beyond
        self._lock = _RWLock()
        # Any: faiss's stubs know the base Index only, not the fields of IndexIDMap2 and IndexIVFFlat
        # (id_map, invlists, nlist, nprobe) this class reads.
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._trained_size = 0

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        ids: NDArray[np.int64],
        vectors: NDArray[np.float32],
        dim: int = 128,
        ivf_min_size: int = 50_000,
        nprobe: int | None = None,
        exact_beyond: float | None = None,
    ) -> FaceIndex:
        """An index over ids (n,) int64 and unit vectors (n, dim) float32: flat when n < ivf_min_size, else IVF
        trained on these vectors."""
        index = cls(dim=dim, ivf_min_size=ivf_min_size, nprobe=nprobe, exact_beyond=exact_beyond)
        index._index, index._trained_size = index._built(ids, vectors)
        log.info("built %s over %s vectors", index.detail, index.ntotal)
        return index

    def _built(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> tuple[Any, int]:
        """A new faiss index over these items (flat or IVF by their number) and its training size."""
        ids, vectors = self._check_items(ids, vectors)
        index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(self._dim))
        trained = 0
        if len(ids) >= self._ivf_min_size and len(ids) > 0:
            index, trained = self._train_ivf(vectors), len(ids)
        index.add_with_ids(vectors, ids)
        return index, trained

    def reset(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Holds exactly these items from now on (a replica that missed changes rebuilds from the store).
        Built aside, then swapped in: searches keep answering from the old one meanwhile."""
        index, trained = self._built(ids, vectors)
        with self._lock.write():
            self._index, self._trained_size = index, trained
        log.info("rebuilt %s over %s vectors", self.detail, self.ntotal)

    def _train_ivf(self, vectors: NDArray[np.float32]) -> faiss.IndexIVFFlat:
        nlist = nlist_for(len(vectors))
        quantizer = faiss.IndexFlatIP(self._dim)
        ivf = faiss.IndexIVFFlat(quantizer, self._dim, nlist, faiss.METRIC_INNER_PRODUCT)
        # Spherical k-means keeps centroids on the unit sphere, where the data and queries live.
        ivf.cp.spherical = True
        ivf.cp.niter = TRAIN_ITERATIONS
        ivf.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
        ivf.train(vectors)
        ivf.nprobe = self._nprobe_setting or default_nprobe(nlist)
        return ivf

    def _all_items(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Every (id, vector) the index holds, read back from its own storage."""
        if self.kind == "flat":
            flat: Any = faiss.downcast_index(self._index.index)
            stored = faiss.vector_to_array(flat.codes).view(np.float32).reshape(-1, self._dim)
            return faiss.vector_to_array(self._index.id_map).astype(np.int64), stored
        invlists = self._index.invlists
        ids: list[NDArray[np.int64]] = []
        vectors: list[NDArray[np.float32]] = []
        for list_no in range(self._index.nlist):
            size = invlists.list_size(list_no)
            if not size:
                continue
            ids.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
            codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size).copy()
            vectors.append(codes.view(np.float32).reshape(size, self._dim))
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, self._dim), np.float32)
        return np.concatenate(ids).astype(np.int64), np.concatenate(vectors)

    def _maybe_retrain(self) -> None:
        """Flat -> IVF at ivf_min_size; IVF -> a new IVF once grown RETRAIN_GROWTH× past its training size."""
        n = self._index.ntotal
        if self.kind == "flat" and n < self._ivf_min_size:
            return
        if self.kind == "ivf" and n < RETRAIN_GROWTH * max(self._trained_size, 1):
            return
        ids, vectors = self._all_items()
        before = self.detail
        ivf = self._train_ivf(vectors)
        ivf.add_with_ids(vectors, ids)
        self._index = ivf
        self._trained_size = n
        log.info("retrained the index at %s vectors: %s -> %s", n, before, self.detail)

    # -- validation -------------------------------------------------------------------------------

    def _check_vectors(self, vectors: NDArray[np.float32], what: str) -> NDArray[np.float32]:
        x = np.asarray(vectors)
        if x.ndim != 2 or x.shape[1] != self._dim:
            raise InvalidInput(f"{what} must have shape (n, {self._dim}), not {x.shape}.")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise InvalidInput(f"{what} hold NaN or infinite values.")
        return x

    def _check_items(
        self, ids: NDArray[np.int64], vectors: NDArray[np.float32]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        x = self._check_vectors(vectors, "Vectors")
        i = np.ascontiguousarray(np.asarray(ids).reshape(-1), dtype=np.int64)
        if len(i) != len(x):
            raise InvalidInput(f"{len(i)} ids for {len(x)} vectors.")
        if len(i) and i.min() < 0:
            raise InvalidInput("Face ids must not be negative.")
        return i, x

    # -- changes ----------------------------------------------------------------------------------

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Add ids (n,) int64 with unit vectors (n, dim) float32; searchable on return. Ids must be new."""
        ids, vectors = self._check_items(ids, vectors)
        if not len(ids):
            return
        with self._lock.write():
            self._index.add_with_ids(vectors, ids)
            self._maybe_retrain()

    def remove(self, ids: Sequence[int]) -> int:
        """Remove these ids; returns how many entries went. Never returned by a search after this returns."""
        wanted = np.unique(np.asarray(list(ids), dtype=np.int64))
        if not len(wanted):
            return 0
        with self._lock.write():
            return int(self._index.remove_ids(faiss.IDSelectorBatch(wanted)))

    # -- queries ----------------------------------------------------------------------------------

    def search(self, xq: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The k nearest faces of each query.

        xq: (m, dim) float32 unit vectors. Returns D (m, k) float32 euclidean distances, ascending, and
        I (m, k) int64 face ids; I = -1 and D = +inf where fewer than k faces exist or were probed.
        An IVF index probes nprobe lists, and searches again exactly the queries whose approximate best
        distance is above exact_beyond.
        """
        if k < 1:
            raise InvalidInput("k must be at least 1.")
        x = self._check_vectors(xq, "Queries")
        exact_beyond = self.exact_beyond
        with self._lock.read():
            index = self._index
            if self.kind == "flat":
                ip, ids = index.search(x, k)
                return _to_distances(ip, ids), ids
            probe = min(index.nprobe, index.nlist)
            ip, ids = index.search(x, k, params=_ivf_params(probe))
            dist = _to_distances(ip, ids)
            if exact_beyond is not None and probe < index.nlist:
                again = np.flatnonzero(dist[:, 0] > exact_beyond)
                if len(again):
                    # All lists probed: IVFFlat stores raw vectors, so this is exact search.
                    ip2, ids2 = index.search(x[again], k, params=_ivf_params(index.nlist))
                    dist[again], ids[again] = _to_distances(ip2, ids2), ids2
            return dist, ids

    def all_ids(self) -> NDArray[np.int64]:
        """Every face id the index holds, ascending."""
        with self._lock.read():
            ids, _ = self._all_items()
        return np.sort(ids)

    # -- description ------------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def kind(self) -> str:
        """ "flat" (exact) or "ivf" (approximate)."""
        return "ivf" if isinstance(self._index, faiss.IndexIVF) else "flat"

    @property
    def nlist(self) -> int:
        """IVF lists (0 for flat)."""
        return int(self._index.nlist) if self.kind == "ivf" else 0

    @property
    def nprobe(self) -> int:
        """Lists probed per query (0 for flat)."""
        return int(self._index.nprobe) if self.kind == "ivf" else 0

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if value < 1:
            raise InvalidInput("nprobe must be at least 1.")
        with self._lock.write():
            self._nprobe_setting = int(value)
            if self.kind == "ivf":
                self._index.nprobe = int(value)

    @property
    def detail(self) -> str:
        """What the index is, for Stats: e.g. "IndexIVFFlat nlist=4000 nprobe=250 ntotal=1000000"."""
        if self.kind == "ivf":
            return f"IndexIVFFlat nlist={self.nlist} nprobe={self.nprobe} ntotal={self.ntotal}"
        return f"IndexIDMap2(IndexFlatIP) exact ntotal={self.ntotal}"

    # -- persistence ------------------------------------------------------------------------------

    @staticmethod
    def _side_path(path: Path) -> Path:
        return path.with_name(path.name + ".json")

    @classmethod
    def discard_saved(cls, path: Path) -> None:
        """Deletes a saved index and its side file (a removal: the saved vectors must not outlive it)."""
        cls._side_path(path).unlink(missing_ok=True)
        Path(path).unlink(missing_ok=True)

    def save(self, path: Path, store_version: int, store_id: str = "") -> None:
        """Write the index to path and a side file path + ".json" recording the store (its id) and the store
        version it mirrors.

        Crash-safe: the old side file goes first and the new one, naming the new index's size and checksum,
        comes last, each an atomic write (facerec.files); any partial state loads as absent. OSError when
        it cannot be written.
        """
        path = Path(path)
        side = self._side_path(path)
        meta: dict[str, Any] = {}

        def write_index(f: BinaryIO) -> None:
            digest, size = hashlib.sha256(), 0

            def sink(chunk: bytes) -> None:
                nonlocal size
                digest.update(chunk)
                size += len(chunk)
                f.write(chunk)

            with self._lock.read():
                writer = faiss.PyCallbackIOWriter(sink)  # type: ignore[attr-defined]  # not in faiss's stubs
                try:
                    faiss.write_index(self._index, writer)
                except RuntimeError as exc:  # faiss reports a failing write (disk full) this way
                    raise OSError(f"cannot write the index to {path}: {exc}") from exc
                finally:
                    del writer  # flushes its buffer into f
                meta.update(
                    store_id=store_id,
                    store_version=int(store_version),
                    dim=self._dim,
                    kind=self.kind,
                    ntotal=self.ntotal,
                    trained_size=self._trained_size,
                    index_bytes=size,
                    # Checked at load: a file of the right size with garbled bytes is rebuilt, not used.
                    sha256=digest.hexdigest(),
                )

        side.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        atomic_write(path, write_index)
        text = json.dumps(meta)
        atomic_write(side, lambda f: f.write(text.encode()))
        _fsync_dir(path.parent)

    @classmethod
    def load(
        cls,
        path: Path,
        store_version: int,
        dim: int = 128,
        ivf_min_size: int = 50_000,
        nprobe: int | None = None,
        exact_beyond: float | None = None,
        store_id: str = "",
    ) -> FaceIndex | None:
        """The index saved at path if it mirrors this store (store_id) at store_version; None when absent,
        stale or unusable (the caller then rebuilds from the store).

        Checked before use: the side file, the size and sha256 of the index, the store id, the version.
        A file that is damaged, of another store, or from the store's future (an older copy of the store
        was restored) is removed with one log line, never loaded; one merely older is left to be replaced.
        """
        path = Path(path)
        side = cls._side_path(path)
        try:
            meta = json.loads(side.read_text())
            if not isinstance(meta, dict):
                raise ValueError(f"the side file {side} holds {type(meta).__name__}, not an object")
            saved_version = int(meta["store_version"])
            if meta.get("store_id", "") != store_id:
                return cls._set_aside(path, "it was built from another store")
            if saved_version > int(store_version):
                return cls._set_aside(
                    path,
                    f"it mirrors version {saved_version} of a store now at {store_version} (an older copy restored)",
                )
            if saved_version != int(store_version):
                log.info("index at %s is for store version %s, not %s", path, saved_version, store_version)
                return None
            if int(meta["dim"]) != dim or path.stat().st_size != int(meta["index_bytes"]):
                return cls._set_aside(path, "it does not match its side file")
            if sha256_file(path) != meta.get("sha256"):
                return cls._set_aside(path, "it does not match its checksum (damaged or unchecked)")
            raw = faiss.read_index(str(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            return cls._set_aside(path, f"it cannot be read ({exc})")
        if (
            not isinstance(raw, faiss.IndexIVF | faiss.IndexIDMap2)
            or raw.d != dim
            or raw.ntotal != meta["ntotal"]
        ):
            return cls._set_aside(path, "it is not one this gallery writes")
        index = cls(dim=dim, ivf_min_size=ivf_min_size, nprobe=nprobe, exact_beyond=exact_beyond)
        if isinstance(raw, faiss.IndexIVF) and nprobe:
            raw.nprobe = nprobe
        index._index = raw
        index._trained_size = int(meta.get("trained_size", 0))
        return index

    @classmethod
    def _set_aside(cls, path: Path, why: str) -> None:
        """Removes a saved index (and its side file) that must not be served; says why in one line."""
        log.warning("removed the saved index %s: %s; it will be rebuilt from the store", path, why)
        cls._side_path(path).unlink(missing_ok=True)
        path.unlink(missing_ok=True)


def _ivf_params(nprobe: int) -> Any:
    """Search parameters probing `nprobe` lists (faiss's stubs do not know the keyword)."""
    make: Any = faiss.SearchParametersIVF
    return make(nprobe=nprobe)


def _fsync_dir(path: Path) -> None:
    # Directory fsync makes renames durable on POSIX; not supported everywhere (e.g. Windows).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
