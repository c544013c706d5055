"""Re-embedding (gallery/reembed.py) on real SQLite stores and the real SQLite catalog, with a detector and
an embedder that read the face off the kept picture: the runner's steps, failures, concurrent writes and
a takeover after a crash. The real services' re-embed (fp32 -> int8 -> fp32, kill -9) is tests/e2e's."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from facerec.errors import Unavailable
from gallery.catalog import SqliteCatalog
from gallery.namespaces import drop_store, store_location
from gallery.ports import (
    CollectionRow,
    Contract,
    DetectedFace,
    DetectedImage,
    DetectorOptions,
    Embedded,
    FaceStore,
    ModelInfo,
)
from gallery.reembed import NO_PICTURE, Reembedder, ReembedSettings
from gallery.rows import KeptPicture, NewFace
from gallery.stores import open_store

FP32 = "facenet-keras-128"
INT8 = "facenet-keras-128-int8"
BOX = (10.0, 12.0, 40.0, 48.0)


def unit(seed: int, model: str) -> NDArray[np.float32]:
    v = np.random.default_rng(seed * 7 + (1 if model == INT8 else 0)).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def picture(seed: int, face: bool = True) -> KeptPicture:
    data = f"face {seed}".encode() if face else b"nothing here"
    return KeptPicture(data, "image/webp", 100, 120, BOX)


class Detector:
    """Finds the face a fake kept picture names: its seed becomes the crop's pixels."""

    def __init__(self) -> None:
        self.options: list[DetectorOptions] = []
        self.before: Callable[[], None] | None = None

    def detect(
        self, images: Sequence[bytes], options: DetectorOptions, timeout_s: float | None = None
    ) -> list[DetectedImage]:
        self.options.append(options)
        if self.before is not None:
            hook, self.before = self.before, None
            hook()
        out = []
        for data in images:
            if not data.startswith(b"face "):
                out.append(DetectedImage(100, 120, []))
                continue
            seed = int(data.split()[1])
            crop = np.full((2, 2, 3), seed % 256, dtype=np.uint8)
            crop[0, 0, 0] = seed // 256
            out.append(DetectedImage(100, 120, [DetectedFace(BOX, 0.99, (), crop)]))
        return out


class Embedder:
    def __init__(self) -> None:
        self.calls = 0
        self.crash_after: int | None = None

    def embed(
        self, crops: Sequence[NDArray[np.uint8]], timeout_s: float | None = None, model: str = ""
    ) -> Embedded:
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise KeyboardInterrupt("the process dies here")
        seeds = [int(c[0, 0, 0]) * 256 + int(c[0, 1, 0]) for c in crops]
        return Embedded(model, [unit(s, model) for s in seeds])

    def model_info(self, timeout_s: float | None = None, model: str = "") -> ModelInfo:
        return ModelInfo(model or FP32, 128)

    def models(self, timeout_s: float | None = None) -> list[ModelInfo]:
        return [ModelInfo(FP32, 128), ModelInfo(INT8, 128)]


class Host:
    """The CollectionManager's part, over real SQLite stores."""

    def __init__(self, home: Path) -> None:
        self.home = str(home)
        self.switches: list[str] = []

    def open_store(self, row: CollectionRow, generation: int, model: str) -> FaceStore:
        return open_store(store_location(self.home, row.collection_id, generation), model)

    def drop_store(self, row: CollectionRow, generation: int) -> None:
        drop_store(self.home, row.collection_id, generation)

    def switched(self, name: str) -> None:
        self.switches.append(name)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[SqliteCatalog, Host, Detector, Embedder]:
    home = tmp_path / "gallery.sqlite"
    catalog = SqliteCatalog(home, Contract("mtcnn", "box", FP32))
    return catalog, Host(home), Detector(), Embedder()


def enroll(store: FaceStore, identity: str, seeds: Sequence[int], pictures: bool = True) -> list[int]:
    faces = [NewFace(unit(s, store.model), f"sha{s}", BOX, picture(s) if pictures else None) for s in seeds]
    return store.add_faces(identity, faces)


def test_a_reembed_moves_every_face_to_the_new_model_keeping_ids_boxes_and_pictures(setup) -> None:
    catalog, host, detector, embedder = setup
    row = catalog.create("door", Contract("mtcnn", "box", FP32), keep_source_pictures=False)
    with host.open_store(row, 1, FP32) as store:
        ids = enroll(store, "ada", [1, 2, 3]) + enroll(store, "bob", [4, 5])
        (removed,) = enroll(store, "zed", [6])
        store.remove_identity("zed")
    runner = Reembedder(catalog, host, detector, embedder, ReembedSettings(batch=2))
    op = runner.start("door", Contract("", "", INT8), drop_failed=False)
    assert op.target == Contract("mtcnn", "box", INT8) and op.generation == 2
    assert runner.run_once()
    done = runner.get("operations/" + op.operation_id)
    assert done.done and not done.error and done.switched and done.failed == ()
    assert done.faces_done == done.faces_total == 5
    now = catalog.get("door")
    assert now.generation == 2 and now.contract.model == INT8 and now.operation == ""
    assert host.switches == ["door"]
    with host.open_store(now, 2, INT8) as new:
        got_ids, vectors, names = new.embeddings()
        assert got_ids.tolist() == ids and names == ["ada"] * 3 + ["bob"] * 2
        for face_id, vec, seed in zip(got_ids, vectors, [1, 2, 3, 4, 5], strict=True):
            np.testing.assert_array_equal(vec, unit(seed, INT8))
            assert new.picture(int(face_id)).data == f"face {seed}".encode()
        # A removed face's id is never given again, in the new generation either.
        assert enroll(new, "eve", [7]) == [removed + 1]
    assert all(o.model == "mtcnn" and o.alignment == "box" for o in detector.options)
    # the old generation is gone for good
    assert not Path(store_location(host.home, row.collection_id, 1)).exists()


def test_faces_that_cannot_be_carried_fail_it_and_leave_the_collection_as_it_was(setup) -> None:
    catalog, host, detector, embedder = setup
    row = catalog.create("archive", Contract("mtcnn", "box", FP32), keep_source_pictures=False)
    with host.open_store(row, 1, FP32) as store:
        enroll(store, "ada", [1, 2])
        (bare,) = enroll(store, "cy", [3], pictures=False)
        (blank,) = store.add_faces("dee", [NewFace(unit(9, FP32), "sha9", BOX, picture(9, face=False))])
    runner = Reembedder(catalog, host, detector, embedder)
    op = runner.start("archive", Contract("", "", INT8), drop_failed=False)
    runner.run_once()
    failed = runner.get(op.operation_id)
    assert failed.done and not failed.switched and failed.error_reason == "FAILED_PRECONDITION"
    assert "2 face(s) cannot be re-embedded" in failed.error and "drop_failed" in failed.error
    assert {(f.face_id, f.reason) for f in failed.failed} == {
        (bare, NO_PICTURE),
        (blank, "No face was found on its kept picture by mtcnn."),
    }
    same = catalog.get("archive")
    assert same.generation == 1 and same.contract.model == FP32 and same.operation == ""
    assert not Path(store_location(host.home, row.collection_id, 2)).exists()
    with host.open_store(same, 1, FP32) as store:  # unsealed, whole
        assert store.counts() == (3, 4)
        enroll(store, "eve", [11])
    # Allowed to drop them, it switches without them.
    op = runner.start("archive", Contract("", "", INT8), drop_failed=True)
    runner.run_once()
    assert runner.get(op.operation_id).switched
    with host.open_store(catalog.get("archive"), 2, INT8) as new:
        assert new.counts() == (2, 3) and not new.has_identity("cy")


def test_writes_made_while_it_runs_are_carried_over_and_the_sealed_store_refuses_late_ones(setup) -> None:
    catalog, host, detector, embedder = setup
    row = catalog.create("shop", Contract("mtcnn", "box", FP32), keep_source_pictures=False)
    serving = host.open_store(row, 1, FP32)
    (gone, renamed_face) = enroll(serving, "ada", [1, 2])
    enroll(serving, "bob", [3])

    def meanwhile() -> None:  # another request, during the first detection
        enroll(serving, "cy", [4])
        serving.remove_face(gone)
        serving.rename_identity("bob", "robert")

    detector.before = meanwhile
    runner = Reembedder(catalog, host, detector, embedder, ReembedSettings(batch=1))
    op = runner.start("shop", Contract("", "similarity", ""), drop_failed=False)
    runner.run_once()
    assert runner.get(op.operation_id).switched
    with pytest.raises(Unavailable):
        enroll(serving, "late", [5])
    serving.close()
    with host.open_store(catalog.get("shop"), 2, FP32) as new:
        _, _, names = new.embeddings()
        assert sorted(names) == ["ada", "cy", "robert"]
        assert new.identities_of([gone]) == {} and new.identities_of([renamed_face]) == {renamed_face: "ada"}
    assert catalog.get("shop").contract.alignment == "similarity"


def test_a_run_killed_midway_is_taken_over_and_finished_by_another_process(setup) -> None:
    catalog, host, detector, embedder = setup
    row = catalog.create("lab", Contract("mtcnn", "box", FP32), keep_source_pictures=False)
    with host.open_store(row, 1, FP32) as store:
        for n in range(6):
            enroll(store, f"p{n}", [10 + 2 * n, 11 + 2 * n])
        enroll(store, "nopic", [99], pictures=False)
    embedder.crash_after = 3
    first = Reembedder(catalog, host, detector, embedder, ReembedSettings(batch=1, stale_after_s=0.05))
    op = first.start("lab", Contract("", "", INT8), drop_failed=True)
    with pytest.raises(KeyboardInterrupt):
        first.run_once()
    half = catalog.operation(op.operation_id)
    assert not half.done and 0 < half.faces_done < half.faces_total
    assert catalog.get("lab").generation == 1  # still serving the old vectors
    embedder.crash_after = None
    second = Reembedder(catalog, host, detector, Embedder(), ReembedSettings(stale_after_s=0.05))
    # The dead owner's heartbeat goes stale 50 ms after its last step: until then nobody may take it.
    deadline = time.monotonic() + 30
    while not catalog.operation(op.operation_id).done:
        assert time.monotonic() < deadline
        if not second.run_once():
            time.sleep(0.01)
    done = catalog.operation(op.operation_id)
    assert done.switched and [f.identity for f in done.failed] == ["nopic"]
    with host.open_store(catalog.get("lab"), 2, INT8) as new:
        ids, vectors, _ = new.embeddings()
        assert len(ids) == 12
        assert all(np.allclose(np.linalg.norm(v), 1) for v in vectors)


def test_under_the_same_detector_a_face_is_cut_again_where_it_was_found_without_detecting_it(setup) -> None:
    import io

    from PIL import Image

    from facerec import alignment
    from facerec.images import decode_image
    from gallery.reembed import cut_again

    catalog, host, detector, embedder = setup
    pixels = np.random.default_rng(3).integers(0, 255, size=(120, 100, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    points = ((22.0, 30.0), (40.0, 30.5), (31.0, 40.0), (24.0, 50.0), (39.0, 50.0))
    kept = KeptPicture(png.getvalue(), "image/png", 100, 120, BOX, points)
    np.testing.assert_array_equal(cut_again(kept, "box"), alignment.box_crop(pixels, (10, 12, 40, 48)))
    np.testing.assert_array_equal(
        cut_again(kept, "similarity"), alignment.similarity_crop(decode_image(kept.data), np.asarray(points))
    )
    row = catalog.create("kiosk", Contract("mtcnn", "box", FP32), keep_source_pictures=False)
    with host.open_store(row, 1, FP32) as store:
        store.add_faces("ada", [NewFace(unit(1, FP32), "sha1", BOX, kept)])
    runner = Reembedder(catalog, host, detector, embedder)
    op = runner.start("kiosk", Contract("", "similarity", INT8), drop_failed=False)
    runner.run_once()
    assert runner.get(op.operation_id).switched and detector.options == []  # never detected again
    with host.open_store(catalog.get("kiosk"), 2, INT8) as new:
        assert new.picture(1).landmarks == points
