"""Labelled picture folders, walked safely: which folders are identities (for `facerec enroll` and
`facerec eval`), and which entries were skipped and why.

The walk reads regular files only (a FIFO would block the read forever), follows a symlink only when it
stays inside the folder given (unless asked to), and reports every entry it cannot use instead of
stopping: a dangling link, an unreadable file or folder, a device or socket."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from facerec.assets import IMAGE_SUFFIXES
from facerec_app.rpc import ClientError

FOLDER_RULE = (
    "An identity folder is a folder that directly holds pictures (.jpg .jpeg .png .webp .bmp); its name is "
    "the identity. FOLDER holds identity folders, or sets of them (e.g. train/ and val/, merged by name): "
    "when some subfolders are sets, only the sets are read. Hidden folders and eval's own report folders "
    "(with a report.json) are never identities. Only regular files are read; a symlink is followed when it "
    "points inside FOLDER (--follow-symlinks for the rest); entries that cannot be read are listed and skipped."
)

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


@dataclass(frozen=True)
class Skipped:
    """An entry of the folder that was not read, and why (one clause)."""

    path: Path
    reason: str


@dataclass
class Walk:
    """What a folder walk found: (identity, picture) pairs, sorted, and the entries it skipped."""

    pairs: list[tuple[str, Path]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class _Walker:
    def __init__(self, root: Path, skip: Path | None, follow_symlinks: bool) -> None:
        self.root = root
        self.real_root = root.resolve()
        self.skip = skip.resolve() if skip is not None else None
        self.follow_symlinks = follow_symlinks
        self.skipped: dict[Path, Skipped] = {}  # by path: a folder is looked at more than once
        self._listings: dict[Path, list[tuple[Path, os.stat_result]]] = {}

    def _report(self, path: Path, reason: str) -> None:
        self.skipped.setdefault(path, Skipped(path, reason))

    def _usable(self, path: Path) -> os.stat_result | None:
        """The entry's stat (through a symlink), or None after reporting why it is not to be read."""
        try:
            is_link = path.is_symlink()
        except OSError as exc:
            self._report(path, f"cannot be read ({exc.strerror or exc})")
            return None
        if is_link:
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):  # RuntimeError: a symlink loop on older Pythons
                self._report(path, "a symlink to nothing (its target is missing)")
                return None
            if not self.follow_symlinks and not target.is_relative_to(self.real_root):
                self._report(path, f"a symlink to {target}, outside {self.root} (--follow-symlinks reads it)")
                return None
        try:
            return path.stat()
        except OSError as exc:
            self._report(path, f"cannot be read ({exc.strerror or exc})")
            return None

    def entries(self, folder: Path) -> list[tuple[Path, os.stat_result]]:
        """The usable entries of folder (folders and regular files), sorted by name."""
        if folder in self._listings:
            return self._listings[folder]
        found: list[tuple[Path, os.stat_result]] = []
        try:
            names = sorted(os.listdir(folder))
        except OSError as exc:
            self._report(folder, f"cannot be read ({exc.strerror or exc})")
            names = []
        for name in names:
            path = folder / name
            st = self._usable(path)
            if st is None:
                continue
            if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                found.append((path, st))
            else:
                self._report(path, f"not a regular file ({_KINDS.get(stat.S_IFMT(st.st_mode), 'odd')})")
        self._listings[folder] = found
        return found

    def subfolders(self, folder: Path) -> list[Path]:
        return [
            p
            for p, st in self.entries(folder)
            if stat.S_ISDIR(st.st_mode)
            and not p.name.startswith(".")
            and not (p / "report.json").is_file()
            and p.resolve() != self.skip
        ]

    def pictures(self, folder: Path) -> list[Path]:
        found = []
        for p, st in self.entries(folder):
            if not stat.S_ISREG(st.st_mode) or p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if not os.access(p, os.R_OK):
                self._report(p, f"cannot be read ({os.strerror(errno.EACCES)})")
                continue
            found.append(p)
        return found


def walk(folder: Path, skip: Path | None = None, follow_symlinks: bool = False) -> Walk:
    """The pictures of `folder` by FOLDER_RULE, and the entries skipped; `skip` (eval's report folder) is
    never read. Raises ClientError when folder is not a folder or holds no pictures at all."""
    if not folder.is_dir():
        raise ClientError(f"{folder} is not a folder (expected one subfolder of pictures per identity).")
    walker = _Walker(folder, skip, follow_symlinks)
    children = walker.subfolders(folder)
    sets = [c for c in children if any(walker.pictures(g) for g in walker.subfolders(c))]
    identity_folders = (
        [g for s in sets for g in walker.subfolders(s) if walker.pictures(g)]
        if sets
        else [c for c in children if walker.pictures(c)]
    )
    result = Walk()
    for person in identity_folders:
        if not person.name.strip():
            walker._report(person, "a folder whose name is blank, which is no identity")
            continue
        result.pairs += [(person.name, picture) for picture in walker.pictures(person)]
    result.pairs.sort(key=lambda pair: (pair[0], str(pair[1])))
    result.skipped = sorted(walker.skipped.values(), key=lambda s: str(s.path))
    if not result.pairs:
        raise ClientError(f"{folder} holds no pictures in identity subfolders ({', '.join(IMAGE_SUFFIXES)}).")
    return result


def labelled_set(folder: Path, skip: Path | None = None) -> list[tuple[str, Path]]:
    """(identity, picture) pairs of `folder` by FOLDER_RULE (the skipped entries left out)."""
    return walk(folder, skip).pairs
