"""Labelled picture folders: which folders are identities, for `facerec eval` (and `enroll`)."""

from __future__ import annotations

from pathlib import Path

from facerec.assets import IMAGE_SUFFIXES
from facerec_app.rpc import ClientError

FOLDER_RULE = (
    "An identity folder is a folder that directly holds pictures (.jpg .jpeg .png .webp .bmp); its name is "
    "the identity. FOLDER holds identity folders, or sets of them (e.g. train/ and val/, merged by name): "
    "when some subfolders are sets, only the sets are read. Hidden folders and eval's own report folders "
    "(with a report.json) are never identities."
)


def _is_report(folder: Path) -> bool:
    return (folder / "report.json").is_file()


def _subfolders(folder: Path, skip: Path | None) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and not _is_report(p) and p.resolve() != skip
    )


def _holds_pictures(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def labelled_set(folder: Path, skip: Path | None = None) -> list[tuple[str, Path]]:
    """(identity, picture) pairs of `folder` by FOLDER_RULE; `skip` (the report folder) is never read."""
    if not folder.is_dir():
        raise ClientError(f"{folder} is not a folder (expected one subfolder of pictures per identity).")
    skip = skip.resolve() if skip is not None else None
    children = _subfolders(folder, skip)
    sets = [c for c in children if any(_holds_pictures(g) for g in _subfolders(c, skip))]
    identity_folders = (
        [g for s in sets for g in _subfolders(s, skip) if _holds_pictures(g)]
        if sets
        else [c for c in children if _holds_pictures(c)]
    )
    pairs = [
        (person.name, picture)
        for person in identity_folders
        for picture in sorted(person.iterdir())
        if picture.is_file() and picture.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not pairs:
        raise ClientError(f"{folder} holds no pictures in identity subfolders ({', '.join(IMAGE_SUFFIXES)}).")
    return sorted(pairs, key=lambda pair: (pair[0], str(pair[1])))
