"""Every figure the README and the docs quote from the shipped calibration (facerec/calibration.py) or
from bench/RESULTS.md is checked against its source here, so the two cannot drift apart again.

A quoted figure is its source rounded to the decimals printed: it must lie within half a unit of the
last printed decimal. When a source changes (a new calibration, a new benchmark run), the failing test
names the sentence to update.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from facerec.calibration import SHIPPED, SHIPPED_RETINAFACE, OperatingPoint
from tests import readme

ROOT = Path(__file__).resolve().parents[1]
# The default contract's points (RetinaFace's crops), which the tour, the demo and the answers show.
INT8, FP32 = SHIPPED_RETINAFACE["facenet-keras-128-int8"], SHIPPED_RETINAFACE["facenet-keras-128"]
MTCNN_INT8, MTCNN_FP32 = SHIPPED["facenet-keras-128-int8"], SHIPPED["facenet-keras-128"]
# The header of the README's second table, MTCNN's points.
MTCNN_TABLE = "| MTCNN's point |"
NUMBER = r"(\d[\d,]*(?:\.\d+)?)"


def value(text: str) -> float:
    return float(text.replace(",", ""))


def quotes(text: str, source: float, scale: float = 1.0) -> bool:
    """True when `text` (a number as printed, e.g. "1.073", "0.77") is source * scale rounded."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(value(text) - source * scale) <= 0.5 * 10**-decimals + 1e-9


def points(shipped: tuple[tuple[OperatingPoint, ...], OperatingPoint]) -> dict[str, OperatingPoint]:
    verification, identification = shipped
    return {p.name: p for p in verification} | {"identification": identification}


@pytest.mark.parametrize("detector", ["retinaface", "mtcnn"])
def test_the_readme_operating_point_tables_are_the_shipped_calibrations(detector: str) -> None:
    section = readme.section("Thresholds are operating points")
    first, second = section.split(MTCNN_TABLE)
    # The RetinaFace table with the sentence before it; MTCNN's with the paragraph just before its header.
    table = (
        first if detector == "retinaface" else first.rstrip().rsplit("\n\n", 1)[1] + second.split("\n\n")[0]
    )
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`" in line.split("|")[1]]
    int8, fp32 = (
        (points(INT8), points(FP32)) if detector == "retinaface" else (points(MTCNN_INT8), points(MTCNN_FP32))
    )
    checked = set()
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        name = re.search(r"`([\w-]+)`", cells[0]).group(1)  # type: ignore[union-attr]
        if name not in int8:
            assert "too few" in cells[3], row  # far_1e-4: no point shipped, and the row says why
            continue
        checked.add(name)
        a, b = int8[name], fp32[name]
        threshold_int8, threshold_fp32 = (re.search(NUMBER, c).group(1) for c in cells[1:3])  # type: ignore[union-attr]
        assert quotes(threshold_int8, a.threshold) and quotes(threshold_fp32, b.threshold), row
        tars = re.findall(rf"{NUMBER}%", cells[4])
        assert len(tars) == 2 and quotes(tars[0], a.tar, 100) and quotes(tars[1], b.tar, 100), row
        rates = re.findall(rf"{NUMBER}%", cells[3])
        if name == "identification":
            (upper,) = rates
            match = re.search(r"no stranger of (\d+)", cells[3])
            assert match and int(match.group(1)) == a.impostor_pairs == b.impostor_pairs, row
            assert a.far == b.far == 0 and quotes(upper, a.far_upper, 100), row
        elif cells[3].startswith("int8"):
            assert [
                quotes(r, s, 100)
                for r, s in zip(rates, (a.far, a.far_upper, b.far, b.far_upper), strict=True)
            ] == [True] * 4
        else:  # one FAR for both precisions
            for p in (a, b):
                assert quotes(rates[0], p.far, 100) and quotes(rates[1], p.far_upper, 100), row
            pairs = re.search(r"(\d+) pairs?\b", cells[3])
            if pairs:
                assert int(pairs.group(1)) == round(a.far * a.impostor_pairs), row
    assert checked == set(int8)
    pairs = re.search(rf"on {NUMBER} different-person and\s+{NUMBER} same-person pairs", table)
    assert pairs, "the sentence before the table names the pair counts"
    p = int8["far_1e-3"]
    assert (value(pairs.group(1)), value(pairs.group(2))) == (p.impostor_pairs, p.genuine_pairs)


def test_the_identification_thresholds_quoted_are_the_shipped_ones() -> None:
    section = readme.section("Thresholds are operating points")
    bullet = re.search(rf"Identify \(open set\): {NUMBER} \(int8\), {NUMBER} \(fp32\)", section)
    assert bullet, "the Identify bullet quotes both precisions' thresholds"
    assert quotes(bullet.group(1), INT8[1].threshold) and quotes(bullet.group(2), FP32[1].threshold)
    split = re.search(
        rf"best balanced split: {NUMBER} \(int8\b.*?names\s+{NUMBER}% of known faces", section, re.S
    )
    assert split and quotes(split.group(1), INT8[1].threshold) and quotes(split.group(2), INT8[1].tar, 100)


def eval_output() -> str:
    (shown,) = [
        c.output
        for c in readme.console_commands(readme.section("A five-minute tour"))
        if c.line.startswith("facerec eval")
    ]
    return shown


def test_the_tours_eval_run_is_the_one_the_int8_points_were_shipped_from() -> None:
    shown = eval_output()
    box = shown.split("\nsimilarity ")[0]
    int8 = points(INT8)
    lines = re.findall(
        rf"^\s+(\w[\w-]*)\s+threshold {NUMBER}\s+FAR {NUMBER}% \(<= {NUMBER}% at 95%\)\s+TAR {NUMBER}%",
        box,
        re.M,
    )
    assert {name for name, *_ in lines} == set(int8) - {"identification"}
    for name, threshold, far, upper, tar in lines:
        p = int8[name]
        assert quotes(threshold, p.threshold) and quotes(far, p.far, 100), name
        assert quotes(upper, p.far_upper, 100) and quotes(tar, p.tar, 100), name
    identify = re.search(
        rf"open-set identification: threshold {NUMBER} .*? accepts {NUMBER}% of known faces.*?accept <= {NUMBER}%",
        box,
    )
    assert identify
    assert quotes(identify.group(1), INT8[1].threshold) and quotes(identify.group(2), INT8[1].tar, 100)
    assert quotes(identify.group(3), INT8[1].far_upper, 100)
    saved = re.search(
        rf"saved thresholds for ([\w-]+) .*: verify {NUMBER} \((\S+)\), identify {NUMBER}", shown
    )
    assert saved and saved.group(1) == "facenet-keras-128-int8"
    assert quotes(saved.group(2), int8[saved.group(3)].threshold) and quotes(
        saved.group(4), INT8[1].threshold
    )


def test_the_alignment_paragraph_quotes_the_tours_alignment_line() -> None:
    line = re.search(
        rf"box TAR {NUMBER}% at FAR {NUMBER}%, similarity TAR {NUMBER}% at FAR {NUMBER}%", eval_output()
    )
    assert line
    section = readme.section("Thresholds are operating points")
    text = re.search(
        rf"kept its promise \(TAR {NUMBER}% at a held-out FAR of {NUMBER}%\); similarity alignment reached a "
        rf"lower\s+TAR \({NUMBER}%\) and accepted {NUMBER}%",
        section,
    )
    assert text and text.groups() == line.groups()


def test_the_identify_answers_and_the_demo_quote_the_shipped_int8_points() -> None:
    text = (ROOT / "README.md").read_text()
    # The gallery answers with the threshold it used: int8's identification point, to 4 decimals.
    answered = re.findall(r'"threshold": ?' + NUMBER, text)
    assert len(answered) >= 2 and all(quotes(t, INT8[1].threshold) for t in answered)
    demo = re.search(
        rf"at far_1e-3 \(threshold {NUMBER}; on its {NUMBER} calibration different-person pairs FAR {NUMBER}%, "
        rf"<= {NUMBER}% at 95%, and TAR {NUMBER}% of {NUMBER} same-person pairs\)",
        text,
    )
    assert demo
    p = points(INT8)["far_1e-3"]
    threshold, impostors, far, upper, tar, genuine = demo.groups()
    assert quotes(threshold, p.threshold) and (value(impostors), value(genuine)) == (
        p.impostor_pairs,
        p.genuine_pairs,
    )
    assert quotes(far, p.far, 100) and quotes(upper, p.far_upper, 100) and quotes(tar, p.tar, 100)


RESULTS = (ROOT / "bench" / "RESULTS.md").read_text()

# (document, the figure as the document quotes it, the figure in bench/RESULTS.md): the groups pair up.
FROM_RESULTS = [
    (
        "deploy/README.md",
        rf"one gallery replica answered \*\*{NUMBER} Identify calls/s\*\*",
        rf"1 replica {NUMBER}/s, 2 replicas",
    ),
    (
        "deploy/README.md",
        rf"two replicas \*\*{NUMBER}/s\*\* \({NUMBER}x\)",
        rf"2 replicas {NUMBER}/s \({NUMBER}x\)",
    ),
    (
        "deploy/README.md",
        rf"within 2 s \({NUMBER} ms median, {NUMBER} ms at\s+most",
        rf"median {NUMBER} ms, max {NUMBER} ms",
    ),
    ("README.md", rf"served within 2 s, {NUMBER} ms median measured", rf"median {NUMBER} ms, max"),
    (
        "deploy/README.md",
        rf"{NUMBER}-{NUMBER}x of the raw\s+vectors",
        rf"memory / raw vectors\s+{NUMBER}x\s+{NUMBER}x\s+{NUMBER}x\s+{NUMBER}x",
    ),
    (
        "deploy/README.md",
        rf"The gateway held {NUMBER} MiB resident",
        rf"The gateway held {NUMBER} MiB resident",
    ),
]


@pytest.mark.parametrize(("document", "quoted", "source"), FROM_RESULTS)
def test_figures_quoted_from_bench_results_are_the_ones_it_holds(
    document: str, quoted: str, source: str
) -> None:
    text = re.search(quoted, (ROOT / document).read_text())
    measured = re.search(source, RESULTS)
    assert text, f"{document} no longer quotes {quoted!r}: update this test with it"
    assert measured, f"bench/RESULTS.md no longer holds {source!r}"
    figures = measured.groups()
    if len(figures) == 4:  # a range quoted from a row: its lowest and highest
        figures = (min(figures, key=value), max(figures, key=value))
    for shown, result in zip(text.groups(), figures, strict=True):
        assert quotes(shown, value(result)), (document, shown, result)


def test_every_calibration_example_names_the_model_the_embedder_runs_by_default() -> None:
    from embedding_service.config import Settings
    from embedding_service.embedder import model_name

    default = model_name(Settings.from_env({}).precision)
    saved = re.findall(r"saved thresholds for (\S+) to", (ROOT / "README.md").read_text())
    assert len(saved) >= 2 and set(saved) == {default}
