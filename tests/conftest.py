"""Shared fixtures: the fetched assets (real weights and data) and the real models, loaded once per session."""

from __future__ import annotations

import os

# Tests serve gRPC in this process (fakes) while they start service processes. With gRPC's fork
# support on, a child forked then (subprocess with preexec_fn forks, for the parent-death signal) runs
# gRPC's at-fork handler against pollers it did not inherit, and can die before exec with "epoll_wait
# error: Bad file descriptor": about one start in eight. The children exec at once and need none of it.
# Read when grpc is first imported, so it is set before anything imports it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

from facerec import assets as assets_mod  # noqa: E402
from facerec.tfconfig import quiet_tensorflow  # noqa: E402
from tests.support.servers import dead_address  # noqa: E402

quiet_tensorflow()

# No example database: a failing example found once would be replayed from .hypothesis/ by every later
# run in this clone, so one flake became a permanent failure of `make test`. A failure is fixed in the
# code and pinned with @example instead.
hypothesis_settings.register_profile("facerec", database=None)
hypothesis_settings.load_profile("facerec")


@pytest.fixture(scope="session")
def fetched_assets() -> assets_mod.Assets:
    """The real weights, the 5-celebrity data, the int8 calibration crops and the exported ONNX files the
    services load (made by `make test`'s `facerec fetch` and `facerec export` before pytest; made here
    otherwise, and only verified when they are there)."""
    from facerec_app.calibration_crops import ensure_calibration_set
    from facerec_app.export_command import export_models

    fetched = assets_mod.fetch(assets_mod.facerec_home(os.environ))
    ensure_calibration_set(fetched)
    export_models(fetched)
    return fetched


@pytest.fixture(scope="session")
def train_images(fetched_assets: assets_mod.Assets) -> list[tuple[str, Path]]:
    return assets_mod.labelled_images(fetched_assets.split("train"))


@pytest.fixture(scope="session")
def val_images(fetched_assets: assets_mod.Assets) -> list[tuple[str, Path]]:
    return assets_mod.labelled_images(fetched_assets.split("val"))


@pytest.fixture(scope="session")
def facenet_model(fetched_assets: assets_mod.Assets):
    """The real Keras FaceNet, loaded once (several seconds)."""
    from embedding_service.facenet import build_facenet
    from facerec.tfconfig import pin_threads

    pin_threads(2, 1)
    return build_facenet(fetched_assets.facenet_h5)


@pytest.fixture(scope="session")
def mtcnn_model():
    """mtcnn.MTCNN with its packaged weights, loaded once."""
    from mtcnn import MTCNN

    from facerec.tfconfig import pin_threads

    pin_threads(2, 1)
    return MTCNN()


@pytest.fixture(scope="session")
def postgres_cluster():
    """One throwaway PostgreSQL 15 cluster for the session (tests take a database each: `postgres_url`)."""
    from tests.support.engines import PostgresCluster

    cluster = PostgresCluster()
    yield cluster
    cluster.close()


@pytest.fixture
def postgres_url(postgres_cluster) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL cluster."""
    return postgres_cluster.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a gallery keeps its store, once per store backend: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "g.sqlite")
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def milvus_lite_server():
    """One milvus-lite server for the session."""
    from tests.support.engines import MilvusLiteServer

    server = MilvusLiteServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def milvus_standalone_server():
    """One Milvus standalone server (the `milvus` package's milvus-server) for the session."""
    from tests.support.engines import MilvusStandaloneServer

    server = MilvusStandaloneServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def milvus_server(milvus_lite_server):
    """The session's milvus-lite server (tests take a collection each: `milvus_settings`)."""
    return milvus_lite_server


@pytest.fixture
def milvus_settings(milvus_server):
    """A fresh collection on the session's milvus-lite server (a fixture tests may ask for by name, with
    request.getfixturevalue; `milvus_settings_each` runs a test on both engines)."""
    from tests.support.engines import fresh_milvus_settings

    return fresh_milvus_settings(milvus_server.uri)


@pytest.fixture(params=["lite", "standalone"])
def milvus_settings_each(request: pytest.FixtureRequest):
    """A fresh collection on each of the session's Milvus engines: milvus-lite, then the Milvus standalone
    server. Asked for by name only (pytest must see it to parametrise); a fixture choosing an index by
    parameter uses milvus_{lite,standalone}_server and fresh_milvus_settings instead."""
    from tests.support.engines import fresh_milvus_settings

    return fresh_milvus_settings(request.getfixturevalue(f"milvus_{request.param}_server").uri)


@pytest.fixture
def dead() -> Iterator[str]:
    """'127.0.0.1:PORT' where nothing answers for the whole test (tests.support.servers.dead_address): a port
    merely found free could be taken meanwhile by another test's server, on this worker or the other."""
    with dead_address() as address:
        yield address
