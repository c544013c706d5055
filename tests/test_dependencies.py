"""pyproject's dependency lists: the services' base set holds no export chain, test engine or plotting.

A serving install (`pip install facerec`) is what every container and pod carries; TensorFlow and its
chain are for `facerec export` only (the `export` extra), milvus-lite, the Milvus server (`milvus`) and
grpcio-tools for the tests and `make protos`, matplotlib for `facerec eval`'s plots.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_SERVING = {"tensorflow", "tensorflow-cpu", "keras", "keras-facenet", "tf2onnx", "h5py", "grpcio-tools"}
NOT_SERVING |= {"milvus-lite", "milvus", "matplotlib", "pymilvus", "psycopg"}


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def name_of(requirement: str) -> str:
    """The normalized distribution name of a requirement string ("psycopg[binary]>=3.2" → "psycopg")."""
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_the_serving_set_has_no_tensorflow_export_chain_test_engine_or_plots() -> None:
    base = {name_of(r) for r in project()["dependencies"]}
    assert base & NOT_SERVING == set()
    assert {"grpcio", "onnxruntime", "faiss-cpu", "fastapi"} <= base


def test_each_extra_holds_its_part_and_dev_holds_them_all() -> None:
    extras = {name: {name_of(r) for r in reqs} for name, reqs in project()["optional-dependencies"].items()}
    assert {"tensorflow-cpu", "keras", "keras-facenet", "tf2onnx", "h5py"} <= extras["export"]
    assert extras["postgres"] == {"psycopg"}
    assert extras["milvus"] == {"pymilvus"}
    assert extras["eval"] == {"matplotlib"}
    dev = project()["optional-dependencies"]["dev"]
    assert "facerec[export,postgres,milvus,eval]" in dev
    # Test-only engines and tools are in dev alone.
    assert {"milvus-lite", "milvus", "grpcio-tools", "pytest"} <= extras["dev"]
    for name in ("export", "postgres", "milvus", "eval"):
        assert not extras[name] & {"milvus-lite", "milvus", "grpcio-tools", "pytest"}


@pytest.mark.parametrize("module", ["psycopg", "pymilvus"])
def test_a_gallery_configured_for_a_missing_extra_says_which_to_install(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facerec.errors import InvalidInput
    from gallery.index_milvus import MilvusIndex, MilvusSettings
    from gallery.stores import open_store

    # As in a serving install without that extra: importing it fails.
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setitem(sys.modules, "gallery.store_postgres", None)
    with pytest.raises(InvalidInput) as caught:
        if module == "psycopg":
            open_store("postgresql://facerec@127.0.0.1:1/facerec", "m")
        else:
            MilvusIndex(MilvusSettings("http://127.0.0.1:1"), "m", 128, lambda ids: {})
    extra = {"psycopg": "postgres", "pymilvus": "milvus"}[module]
    assert str(caught.value).endswith(f"pip install 'facerec[{extra}]'.")
