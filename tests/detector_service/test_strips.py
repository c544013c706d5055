"""P-Net over strips (detector_service.strips): the real P-Net's outputs on a whole level, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector_service import onnx_nets
from detector_service.config import Settings
from detector_service.rewrites import faster
from detector_service.strips import MIN_STRIP_ROWS, in_strips, pnet_cells
from facerec.onnx import cpu_session, read_model

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def pnet(fetched_assets):
    """The served P-Net (the cached export, rewritten at load as the service does), counting its calls."""
    models_dir = Path(Settings.from_env({"FACEREC_HOME": str(fetched_assets.home)}).models_dir)
    data = read_model(onnx_nets.cache_paths(models_dir)["pnet"])
    if data is None:
        pytest.skip("no cached mtcnn export under FACEREC_HOME/models (run `facerec export`)")
    session = cpu_session(faster(data), 1, 1, arena=False)
    calls: list[tuple[int, ...]] = []

    def run(batch):
        calls.append(batch.shape)
        return tuple(session.run(None, {"input": batch}))

    run.calls = calls
    return run


# Heights odd and even (the first pool pads the bottom row of an odd map), widths odd and even, stacks of
# several pictures, and levels just above and below one strip.
SHAPES = [(1, 300, 240), (1, 301, 239), (3, 97, 131), (2, 64, 60), (1, 27, 400), (1, 12, 12), (1, 613, 37)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cells", [1, 700, 4096])
def test_strips_give_the_whole_levels_bits(pnet, shape: tuple[int, int, int], cells: int) -> None:
    x = np.random.default_rng(sum(shape)).uniform(-1.0, 1.0, size=(*shape, 3)).astype(np.float32)
    whole = pnet(x)
    pnet.calls.clear()
    striped = in_strips(pnet, cells)(x)
    for a, b in zip(whole, striped, strict=True):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    rows = pnet_cells(shape[1])
    per_strip = max(MIN_STRIP_ROWS, cells // (shape[0] * pnet_cells(shape[2])))
    assert len(pnet.calls) == -(-rows // per_strip)


def test_a_level_within_one_strip_is_one_call(pnet) -> None:
    pnet.calls.clear()
    in_strips(pnet)(np.zeros((1, 60, 60, 3), np.float32))
    assert pnet.calls == [(1, 60, 60, 3)]


def test_pnet_cells_match_the_nets_own_output(pnet) -> None:
    for side in (12, 13, 14, 25, 26, 101):
        reg, prob = pnet(np.zeros((1, side, side + 1, 3), np.float32))
        assert reg.shape[1:3] == prob.shape[1:3] == (pnet_cells(side), pnet_cells(side + 1))
