"""Enrolling many pictures through a running gallery: each picture on its own, every failure named with
its path, and a summary that comes whatever happened (a picture refused, the gallery gone mid-folder)."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from facerec.v1 import common_pb2, gallery_pb2
from facerec_app.folders import Skipped
from facerec_app.rpc import ABOUT_THE_REQUEST, ClientError, GalleryClient, progress, read_image

# Outcomes that stored a face (a DUPLICATE names the face already stored).
STORED = ("ENROLLED", "MULTIPLE_FACES", "DUPLICATE")


def count(n: int, noun: str) -> str:
    """ "1 picture", "2 pictures", "1 identity", "5 identities", "1 face", "2 faces"."""
    plural = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"
    return f"{n} {noun if n == 1 else plural}"


@dataclass
class EnrollReport:
    """outcomes: counts by EnrollOutcome name; failed: the pictures that could not be enrolled (unreadable,
    refused by the gallery, invalid) with why; not_sent: pictures never sent because `stopped` (the
    gallery unreachable, a token refused) ended the run."""

    outcomes: Counter[str] = field(default_factory=Counter)
    failed: list[Skipped] = field(default_factory=list)
    not_sent: int = 0
    stopped: ClientError | None = None

    @property
    def stored(self) -> int:
        return sum(self.outcomes[name] for name in STORED)


def enroll_pairs(
    client: GalleryClient, pairs: Sequence[tuple[str, Path]], desc: str = "enroll", strict: bool = False
) -> EnrollReport:
    """Enrolls each picture under its identity, four at a time; lists problem pictures on stderr (and
    pictures already enrolled under another identity: a warning, or refused when strict).

    A failure about one picture (unreadable, invalid, too large) is recorded and the rest go on; a
    failure about the gallery itself stops sending, and the pictures not sent are counted."""
    report = EnrollReport()
    problems: list[str] = []
    stop = threading.Event()
    bar = progress(len(pairs), desc)

    def one(pair: tuple[str, Path]) -> tuple[Path, gallery_pb2.EnrollResult | ClientError | None]:
        identity, path = pair
        if stop.is_set():
            return path, None
        try:
            request = gallery_pb2.EnrollRequest(
                identity=identity, images=[common_pb2.Image(data=read_image(path))], strict=strict
            )
            reply = client.call("Enroll", request)
        except ClientError as exc:
            if exc.code not in ABOUT_THE_REQUEST:
                stop.set()
            return path, exc
        return path, reply.results[0]

    with ThreadPoolExecutor(4) as pool:
        for path, result in pool.map(one, pairs):
            bar.update(1)
            if result is None:
                report.not_sent += 1
            elif isinstance(result, ClientError):
                if result.code in ABOUT_THE_REQUEST:
                    report.failed.append(Skipped(path, _without_path(str(result), path)))
                else:
                    report.stopped = report.stopped or result
                    report.not_sent += 1
            else:
                name = gallery_pb2.EnrollOutcome.Name(result.outcome)
                report.outcomes[name] += 1
                if result.duplicate_of and result.outcome != gallery_pb2.INVALID:
                    problems.append(f"  warning: {path} is already enrolled as {result.duplicate_of!r} too")
                if result.outcome == gallery_pb2.MULTIPLE_FACES:
                    problems.append(f"  several faces, the largest enrolled: {path}")
                elif result.outcome == gallery_pb2.INVALID:
                    reason = result.error.message or "the gallery found the picture invalid"
                    report.failed.append(Skipped(path, reason))
                elif result.outcome not in (gallery_pb2.ENROLLED, gallery_pb2.DUPLICATE):
                    problems.append(f"  {name.lower().replace('_', ' ')}: {path}")
    bar.close()
    for line in problems:
        sys.stderr.write(line + "\n")
    return report


def _without_path(message: str, path: Path) -> str:
    """A read error names the path already ("Cannot read X: ..."); the listing adds it once."""
    return message.replace(f"{path}: ", "").replace(f" {path}", " it")


def summary(report: EnrollReport, skipped: Sequence[Skipped]) -> str:
    """ "92 enrolled (4 the largest of several faces), 1 no face, 2 failed": stored faces first."""
    outcomes = report.outcomes
    several = (
        f" ({outcomes['MULTIPLE_FACES']} the largest of several faces)" if outcomes["MULTIPLE_FACES"] else ""
    )
    parts = [f"{report.stored} enrolled{several}"]
    if outcomes["DUPLICATE"]:
        parts[0] += f", {outcomes['DUPLICATE']} of them already enrolled"
    for name, n in sorted(outcomes.items()):
        if name not in (*STORED, "INVALID") and n:
            parts.append(f"{n} {name.lower().replace('_', ' ')}")
    failed = len(report.failed) + len(skipped)
    if failed:
        parts.append(f"{failed} failed")
    if report.not_sent:
        parts.append(f"{report.not_sent} not sent")
    return ", ".join(parts)


def failures(report: EnrollReport, skipped: Sequence[Skipped]) -> list[Skipped]:
    """Every picture or entry that failed, in path order: those the walk skipped and those refused."""
    return sorted([*skipped, *report.failed], key=lambda s: str(s.path))
