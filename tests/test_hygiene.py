"""Source hygiene a face gallery needs: no code-executing file formats, parameterized SQL, and logs
that never hold pictures or embeddings. The first two read the source's syntax trees (so comments
and strings that merely name pickle do not count); the last runs a whole request flow at DEBUG."""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from facerec.server import Health

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "facerec",
    "facerec_app",
    "detector_service",
    "embedding_service",
    "gallery",
    "gateway",
    "bench",
    "tests",
)


def sources() -> Iterator[tuple[Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "_pb2" in path.name:
                continue
            yield path, ast.parse(path.read_text(), filename=str(path))


def dotted(node: ast.AST) -> str:
    """'np.load' for the call target np.load; '' for anything not a plain dotted name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


UNSAFE_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "dill",
    "cloudpickle",
    "joblib",
    "shelve",
    "marshal",
    "torch",
}
UNSAFE_CALLS = {
    "yaml.load",
    "yaml.unsafe_load",
    "yaml.full_load",
    "torch.load",
    "pandas.read_pickle",
    "pd.read_pickle",
}
UNSAFE_CALL_NAMES = {"load_model"}  # keras: a saved model's Lambda layers are Python code


def unsafe_loads(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in UNSAFE_CALLS or name.rsplit(".", 1)[-1] in UNSAFE_CALL_NAMES:
                found.append(f"{name}() at line {node.lineno}")
            elif name in ("np.load", "numpy.load"):
                keywords = {k.arg: k.value for k in node.keywords}
                flag = keywords.get("allow_pickle")
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    found.append(f"{name}() without allow_pickle=False at line {node.lineno}")
    return found


def test_no_code_executing_format_is_ever_loaded() -> None:
    problems = {str(p.relative_to(ROOT)): bad for p, tree in sources() if (bad := unsafe_loads(tree))}
    assert problems == {}


def test_the_checker_catches_each_unsafe_load() -> None:
    for code in (
        "import pickle",
        "from joblib import load",
        "import numpy as np\nnp.load('x.npz')",
        "import numpy as np\nnp.load('x.npz', allow_pickle=True)",
        "import yaml\nyaml.load(open('x'))",
        "from keras.models import load_model\nload_model('m.h5')",
    ):
        assert unsafe_loads(ast.parse(code)), code
    assert not unsafe_loads(ast.parse("import numpy as np\nnp.load('x.npz', allow_pickle=False)"))
    assert not unsafe_loads(ast.parse("import yaml\nyaml.safe_load(open('x'))"))


def formatted_sql(tree: ast.Module) -> list[int]:
    """Lines of execute/executemany/executescript calls whose SQL is built by f-string, % or .format().

    One form is allowed: an f-string whose every interpolated value is a local variable built only
    from "?" and "," (the placeholders of an IN list), e.g. marks = ",".join("?" * len(chunk)).
    """
    lines = []
    for scope in ast.walk(tree):
        if not isinstance(scope, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        marks = {
            target.id
            for node in ast.walk(scope)
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name) and _only_placeholders(node.value)
        }
        for node in ast.walk(scope):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in ("execute", "executemany", "executescript") or not node.args:
                continue
            if any(_built(part, marks) for part in ast.walk(node.args[0])):
                lines.append(node.lineno)
    return sorted(set(lines))


def _only_placeholders(value: ast.AST) -> bool:
    """Whether `value` is built from "?"/"," strings and counts (len(...)) alone."""
    counted = {
        id(n)
        for call in ast.walk(value)
        if dotted(getattr(call, "func", None)) == "len"
        for n in ast.walk(call)
    }
    strings = [n.value for n in ast.walk(value) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    other_names = [n for n in ast.walk(value) if isinstance(n, ast.Name) and id(n) not in counted]
    return any("?" in t for t in strings) and all(set(t) <= set("?, ") for t in strings) and not other_names


def _built(part: ast.AST, marks: set[str]) -> bool:
    if isinstance(part, ast.JoinedStr):
        values = [v.value for v in part.values if isinstance(v, ast.FormattedValue)]
        return not all(isinstance(v, ast.Name) and v.id in marks for v in values)
    if isinstance(part, ast.BinOp) and isinstance(part.op, ast.Mod):
        return True
    return isinstance(part, ast.Call) and isinstance(part.func, ast.Attribute) and part.func.attr == "format"


def test_sql_is_parameterized() -> None:
    uses_sql = [(p, tree) for p, tree in sources() if "sqlite3" in p.read_text() and p.parts[-2] != "tests"]
    assert any(p.name == "store.py" for p, _ in uses_sql)
    problems = {str(p.relative_to(ROOT)): lines for p, tree in uses_sql if (lines := formatted_sql(tree))}
    assert problems == {}
    for code in (
        'db.execute(f"SELECT {x}")',
        'db.execute("SELECT %s" % x)',
        'db.executemany("{}".format(x), [])',
    ):
        assert formatted_sql(ast.parse(code)) == [1], code
    assert formatted_sql(ast.parse('db.execute("SELECT ? " + "FROM t", (x,))')) == []
    in_list = 'def f(db, ids):\n    marks = ",".join("?" * len(ids))\n    db.execute(f"SELECT 1 WHERE a IN ({marks})", ids)'
    assert formatted_sql(ast.parse(in_list)) == []
    assert formatted_sql(ast.parse(in_list.replace('"?"', "name"))) == [3]


# --- Logs ---------------------------------------------------------------------------------------

# What a leaked picture or embedding looks like in a log line.
LEAKS = [
    re.compile(r"b['\"][^'\"]{24,}"),  # a bytes repr
    re.compile(r"\\x[0-9a-f]{2}(\\x[0-9a-f]{2}){7}"),  # escaped binary
    re.compile(r"[A-Za-z0-9+/]{64,}={0,2}"),  # base64
    re.compile(r"-?\d+\.\d+(e-?\d+)?(,\s*-?\d+\.\d+(e-?\d+)?){7}"),  # eight or more floats in a row
    re.compile(r"array\("),  # a numpy repr
]


def test_the_leak_patterns_catch_pictures_and_embeddings() -> None:
    vector = np.random.default_rng(7).normal(size=128).astype(np.float32)
    picture = bytes(range(256))
    import base64

    for text in (repr(picture), str(vector.tolist()), repr(vector), base64.b64encode(picture).decode()):
        assert any(p.search(text) for p in LEAKS), text[:60]
    assert not any(p.search("enrolled 3 faces for 'alice' (1.2 s), threshold 1.100") for p in LEAKS)


@pytest.fixture()
def services(tmp_path: Path) -> Iterator[str]:
    """The real detector and embedder servicers (fake models) and the real gallery, in process."""
    from detector_service.batcher import BatchingDetector
    from detector_service.config import Settings as DetectorSettings
    from detector_service.detector import Box, Detection, Landmarks
    from detector_service.service import build_detector_server
    from embedding_service.batcher import EmbeddingBatcher
    from embedding_service.config import Settings as EmbedderSettings
    from embedding_service.embedder import Embedder
    from embedding_service.service import build_server as build_embedder_server
    from gallery.backend import open_gallery
    from gallery.clients import DetectorClient, EmbedderClient
    from gallery.config import Settings as GallerySettings
    from gallery.service import build_server as build_gallery_server

    class OneFace:
        def detect(self, images, options):
            marks = Landmarks((1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.0))
            crops = [np.ascontiguousarray(np.resize(i, (160, 160, 3))) for i in images]
            return [[Detection(Box(0.0, 0.0, 20.0, 20.0), 0.99, marks, c)] for c in crops]

    def infer(batch):
        return batch[:, ::20, ::20, :].reshape(len(batch), -1)[:, :128].astype(np.float32) + 1.0

    stop = []
    detector = BatchingDetector(OneFace(), max_delay_ms=0)
    d_server, d_port = build_detector_server(
        DetectorSettings(host="127.0.0.1", port=0), detector, Health(["facerec.v1.Detector"])
    )
    e_settings = EmbedderSettings(
        weights_path=tmp_path / "w.h5", calibration_path=tmp_path / "c.json", host="127.0.0.1", port=0
    )
    batcher = EmbeddingBatcher.from_settings(Embedder(infer, runtime="fake"), e_settings)
    e_server, e_port = build_embedder_server(e_settings, batcher, Health(["facerec.v1.Embedder"]))
    g_settings = GallerySettings(
        store=tmp_path / "g.sqlite", calibration_path=tmp_path / "c.json", host="127.0.0.1", port=0
    )
    gallery = open_gallery(
        g_settings.store,
        "facenet-keras-128",
        DetectorClient(f"127.0.0.1:{d_port}", 10),
        EmbedderClient(f"127.0.0.1:{e_port}", 10),
    )
    g_server, g_port = build_gallery_server(g_settings, gallery, Health(["facerec.v1.Gallery"]))
    for server in (d_server, e_server, g_server):
        server.start()
        stop.append(server)
    yield f"127.0.0.1:{g_port}"
    for server in stop:
        server.stop(0)
    gallery.close()
    detector.close()
    batcher.close()


def test_logs_hold_no_pictures_or_embeddings(services: str, caplog: pytest.LogCaptureFixture) -> None:
    from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
    from tests.support.images import encode, noise

    caplog.set_level(logging.DEBUG)
    pictures = [encode(noise(48, 64, seed), "PNG") for seed in range(4)]
    vector = np.random.default_rng(7).normal(size=128)
    with grpc.insecure_channel(services) as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        image = common_pb2.Image
        for i, name in enumerate(("alice", "bob")):
            reply = stub.Enroll(
                gallery_pb2.EnrollRequest(
                    identity=name, images=[image(data=p) for p in pictures[2 * i : 2 * i + 2]]
                ),
                timeout=20,
            )
            assert [r.outcome for r in reply.results] == [gallery_pb2.ENROLLED] * 2
        stub.Enroll(
            gallery_pb2.EnrollRequest(identity="carol", embeddings=[common_pb2.Embedding(values=vector)])
        )
        assert stub.Identify(gallery_pb2.IdentifyRequest(image=image(data=pictures[0])), timeout=20).faces
        stub.Verify(gallery_pb2.VerifyRequest(image_a=image(data=pictures[1]), identity="alice"), timeout=20)
        stub.Search(gallery_pb2.SearchRequest(embedding=common_pb2.Embedding(values=vector)), timeout=20)
        stub.Train(gallery_pb2.TrainRequest(), timeout=20)
        # Failures log too: a broken picture, a NaN embedding, a wrong-length one.
        bad = [
            gallery_pb2.IdentifyRequest(image=image(data=b"\x89PNG\r\n\x1a\n" + bytes(range(200)))),
            gallery_pb2.IdentifyRequest(embedding=common_pb2.Embedding(values=[float("nan")] * 128)),
            gallery_pb2.IdentifyRequest(embedding=common_pb2.Embedding(values=list(vector[:100]))),
        ]
        for request in bad:
            with pytest.raises(grpc.RpcError) as info:
                stub.Identify(request, timeout=20)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert not any(p.search(info.value.details()) for p in LEAKS)
    assert caplog.records  # the flow did log (at least at DEBUG), so the check below means something
    leaks = [r.getMessage()[:120] for r in caplog.records if any(p.search(r.getMessage()) for p in LEAKS)]
    assert leaks == []
