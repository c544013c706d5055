"""int8 FaceNet recipes side by side: cosine to fp32 on held-out and augmented crops, pair accuracy, speed.

    .venv/bin/python -m bench.quantize_recipes                      # the shipped recipe
    .venv/bin/python -m bench.quantize_recipes --recipes minmax,percentile,entropy
    .venv/bin/python -m bench.quantize_recipes --model OLD.onnx     # an int8 file built elsewhere, beside them

Each row quantizes the cached fp32 export (FACEREC_HOME's) on the calibration set's calibration crops and
their augmentations, then runs the guard: min / 1st percentile / mean cosine to fp32 on the held-out
crops (pictures and a person calibration never saw) and on augmentations of them. Speed: ms per face at
1 thread, batch 8, fp32 measured in the same run on the same crops; the ratio is int8's gain.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from embedding_service.quantize import Recipe, Verdict

REPEATS = 6  # batches of 8 timed per model, after one warm-up batch

RECIPES: dict[str, dict[str, object] | None] = {
    "shipped": None,
    "minmax": {"method": "minmax", "fp32_parts": ()},
    "minmax-no-aug": {"method": "minmax", "fp32_parts": (), "copies": 0},
    "minmax-tensor": {"method": "minmax", "fp32_parts": (), "per_channel": False},
    "minmax-stream": {"method": "minmax", "fp32_parts": ("stream", "tail")},
    "percentile": {"method": "percentile", "fp32_parts": ()},
    "percentile-99.9999": {"method": "percentile", "fp32_parts": (), "percentile": 99.9999},
    "percentile-conv": {"method": "percentile", "fp32_parts": (), "op_types": ("Conv",)},
    "percentile-tail": {"method": "percentile", "fp32_parts": ("tail",)},
    "percentile-stream": {"method": "percentile", "fp32_parts": ("stream", "tail")},
    "percentile-head": {"method": "percentile", "fp32_parts": ("head", "tail")},
    "percentile-head-c1": {"method": "percentile", "fp32_parts": ("head", "tail"), "copies": 1},
    "percentile-head-c2": {"method": "percentile", "fp32_parts": ("head", "tail"), "copies": 2},
    "entropy": {"method": "entropy", "fp32_parts": ()},
    "entropy-head": {"method": "entropy", "fp32_parts": ("head", "tail")},
}


def recipe_named(name: str) -> Recipe:
    from embedding_service.quantize import RECIPE, Method, Part

    if name not in RECIPES:
        raise SystemExit(f"unknown recipe {name!r}; one of {', '.join(RECIPES)}")
    changes: dict[str, Any] = dict(RECIPES[name] or {})
    if "method" in changes:
        changes["method"] = Method(changes["method"])
    if "fp32_parts" in changes:
        changes["fp32_parts"] = tuple(Part(p) for p in changes["fp32_parts"])
    return dataclasses.replace(RECIPE, **changes)


def ms_per_face(session: Any, x: NDArray[np.float32]) -> float:
    name = session.get_inputs()[0].name
    session.run(None, {name: x})
    start = time.perf_counter()
    for _ in range(REPEATS):
        session.run(None, {name: x})
    return 1000 * (time.perf_counter() - start) / (REPEATS * len(x))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="shipped", help=f"comma-separated, of: {', '.join(RECIPES)}")
    parser.add_argument(
        "--model", action="append", default=[], help="an int8 .onnx built elsewhere (repeatable)"
    )
    args = parser.parse_args(argv)

    from embedding_service.onnx_runtime import cache_path
    from embedding_service.preprocessing import prepare_batch
    from embedding_service.quantize import CalibrationSet, calibration_crops, check_crops, guard, quantize
    from facerec import assets
    from facerec.onnx import cpu_session
    from facerec_app.calibration_crops import ensure_calibration_set

    fetched = assets.fetch(assets.facerec_home(os.environ))
    calibration_set = CalibrationSet.load(ensure_calibration_set(fetched))
    fp32_data = cache_path(fetched.facenet_h5).read_bytes()
    if not fp32_data:
        raise SystemExit("no fp32 export yet: start the embedder once (or run its tests)")
    fp32 = cpu_session(fp32_data, 1, 1)
    x = prepare_batch(list(calibration_set.crops[:8]))
    fp32_ms = ms_per_face(fp32, x)

    def infer(session: Any) -> Callable[[NDArray[np.float32]], NDArray[np.float32]]:
        name = session.get_inputs()[0].name
        return lambda batch: session.run(None, {name: batch})[0]

    rows: list[tuple[str, float, Verdict, float]] = []
    for path in args.model:
        data = Path(path).read_bytes()
        verdict = guard(infer(fp32), infer(cpu_session(data, 1, 1)), calibration_set)
        rows.append((Path(path).name, 0.0, verdict, ms_per_face(cpu_session(data, 1, 1), x)))
    for name in (n for n in args.recipes.split(",") if n):
        recipe = recipe_named(name)
        start = time.perf_counter()
        data = quantize(fp32_data, prepare_batch(list(calibration_crops(calibration_set, recipe))), recipe)
        took = time.perf_counter() - start
        session = cpu_session(data, 1, 1)
        verdict = guard(infer(fp32), infer(session), calibration_set, recipe)
        rows.append((name, took, verdict, ms_per_face(session, x)))
        sys.stdout.write(f"{name}: {verdict}\n")
        sys.stdout.flush()

    held_out, shifted = check_crops(calibration_set)
    out = sys.stdout.write
    out(
        f"\ncalibration set: {len(calibration_set.crops)} crops, {int((~calibration_set.held_out).sum())} calibrate "
        f"(+ augmented copies), {len(held_out)} held out, {len(shifted)} augmented held-out crops checked\n"
        f"speed: 1 thread, batch 8, {REPEATS} batches; fp32 {fp32_ms:.1f} ms/face in this run\n\n"
    )
    out(
        f"{'recipe':<18}{'quantize s':>11}  {'held-out min/p1/mean':<24}{'augmented min/p1/mean':<24}"
        f"{'acc fp32':>9}{'acc int8':>9}{'ms/face':>8}{'× fp32':>8}  verdict\n"
    )
    for name, took, verdict, ms in rows:
        h, a = verdict.held_out, verdict.augmented
        out(
            f"{name:<18}{took:>11.1f}  {h.min:.4f}/{h.p1:.4f}/{h.mean:.4f}   {a.min:.4f}/{a.p1:.4f}/{a.mean:.4f}   "
            f"{100 * verdict.accuracy_fp32:>8.2f}{100 * verdict.accuracy_int8:>9.2f}{ms:>8.2f}"
            f"{fp32_ms / ms:>8.2f}  {'accepted' if verdict.accepted else verdict.reason}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
