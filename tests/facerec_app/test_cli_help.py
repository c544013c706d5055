"""Every option of the `facerec` command and of the three services says what it does (not only its own
name, or only its variable and default); `serve --help` shows serve's own flags; `--version` exists."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from facerec_app.cli import build_parser, package_version
from facerec_app.supervisor import serve_parser


def actions(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                found += actions(child, f"{name} {sub}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            found.append((name, action))
    return found


def test_every_cli_option_says_what_it_does() -> None:
    found = actions(build_parser(), "facerec") + actions(serve_parser(), "facerec serve")
    assert len(found) > 40
    for where, action in found:
        words = re.findall(r"[a-z]+", (action.help or "").lower())
        own = set(re.findall(r"[a-z]+", " ".join(action.option_strings or [action.dest]).lower()))
        assert len(set(words) - own - {"default"}) >= 3, (
            where,
            action.option_strings or action.dest,
            action.help,
        )


@pytest.mark.parametrize("service", ["detector", "embedder", "gallery"])
def test_every_service_flag_says_more_than_its_variable_and_default(service: str) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "facerec_app.cli", "serve", service, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.split("options:", 1)[1].splitlines()
    bare = []
    for i, line in enumerate(lines):
        option = re.match(r"\s+(--[\w-]+)(?: [A-Z_]+| \[[^\]]*\])?(.*)$", line)
        if option is None:
            continue
        text = option.group(2).strip() or (lines[i + 1].strip() if i + 1 < len(lines) else "")
        if text.startswith("(env") or text.startswith("--"):
            bare.append(option.group(1))
    assert len(lines) > 20 and not bare, bare


def test_serve_help_shows_serves_own_flags_and_version_is_there() -> None:
    run = [sys.executable, "-m", "facerec_app.cli"]
    shown = subprocess.run([*run, "serve", "--help"], capture_output=True, text=True, timeout=60).stdout
    for flag in ("--gallery-port", "--detector-port", "--embedder-port", "--store", "--host"):
        assert flag in shown, flag
    version = subprocess.run([*run, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout == f"facerec {package_version()}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", package_version())


# The one metavar of each kind of value, in every command.
METAVARS = {
    "gallery": "HOST:PORT",
    "detector": "HOST:PORT",
    "embedder": "HOST:PORT",
    "address": "HOST:PORT",
    "identity": "NAME",
    "token": "TOKEN",
    "tls_ca": "CA.pem",
    "images": "PICTURE",
    "image_a": "PICTURE",
    "folder": "FOLDER",
    "out": "FOLDER",
    "operating_point": "POINT",
    "threshold": "DISTANCE",
    "top_k": "N",
    "max_faces": "N",
    "sample": "N",
    "face_id": "FACE_ID",
    "collection": "NAME",
    "name": "NAME",
    "model": "MODEL",
    "poll_s": "SECONDS",
}


def test_every_command_names_the_same_kind_of_value_with_the_same_metavar() -> None:
    found = actions(build_parser(), "facerec")
    takes_value = [
        (where, a) for where, a in found if a.nargs != 0 and not isinstance(a, argparse._SubParsersAction)
    ]
    assert len(takes_value) > 30
    for where, action in takes_value:
        if where == "facerec serve" and action.dest == "rest":
            continue  # the services' own flags, listed by their own parsers
        # Never argparse's fallback (the dest in capitals): every value says what kind it is.
        assert action.metavar is not None or action.choices is not None, (where, action.dest)
        if action.dest in METAVARS:
            assert action.metavar == METAVARS[action.dest], (where, action.dest, action.metavar)
    usage = {where: a.metavar for where, a in takes_value if a.dest in ("gallery", "identity")}
    assert set(usage.values()) == {"HOST:PORT", "NAME"}
