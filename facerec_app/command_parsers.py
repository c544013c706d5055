"""The flags of the client commands of `facerec` (enroll, identify, verify, list, remove, remove-face, demo,
eval), the same words and defaults in every command; what each command does is in facerec_app/commands.py."""

from __future__ import annotations

import argparse
import os
from typing import Any

from facerec_app.commands import (
    cmd_demo,
    cmd_enroll,
    cmd_eval,
    cmd_identify,
    cmd_list,
    cmd_remove,
    cmd_remove_face,
    cmd_verify,
)
from facerec_app.folders import FOLDER_RULE

DEFAULT_GALLERY = "127.0.0.1:50053"


def face_id(text: str) -> int:
    """A face id as `facerec list --faces` shows it: a positive whole number."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a face id (a whole number from `facerec list --faces`)"
        ) from None
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"{text} is not a face id (face ids are positive)")
    return value


# One metavar per kind of value, in every command (tests/facerec_app/test_cli_help.py holds them to it).
ADDRESS, NAME, PICTURE, FOLDER, POINT = "HOST:PORT", "NAME", "PICTURE", "FOLDER", "POINT"


def add_collection_flag(p: argparse.ArgumentParser, role: str = "") -> None:
    """--collection (default FACEREC_COLLECTION, else `default`)."""
    p.add_argument(
        "--collection",
        metavar=NAME,
        default=os.environ.get("FACEREC_COLLECTION", ""),
        help=f"{role}the collection to work on (default FACEREC_COLLECTION, else `default`)",
    )


def add_gallery_flags(p: argparse.ArgumentParser, collection: bool = True) -> argparse.ArgumentParser:
    """--gallery, --json, --token, --tls-ca (and --collection): the same flags, words and defaults in every
    command."""
    p.add_argument(
        "--gallery",
        metavar=ADDRESS,
        default=os.environ.get("FACEREC_GALLERY", DEFAULT_GALLERY),
        help=f"gallery address (default FACEREC_GALLERY, else {DEFAULT_GALLERY})",
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_credential_flags(
        p,
        "bearer token for a gallery that requires one",
        "CA certificate (PEM) to trust: talk TLS to the gallery",
    )
    if collection:
        add_collection_flag(p)
    return p


def add_decision_flags(p: argparse.ArgumentParser, examples: str) -> None:
    p.add_argument(
        "--threshold",
        metavar="DISTANCE",
        type=float,
        default=0.0,
        help="distance threshold (default: the gallery's)",
    )
    p.add_argument(
        "--operating-point",
        default="",
        metavar=POINT,
        help=f"a calibrated point instead of a threshold, {examples}",
    )


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = add_gallery_flags(
        sub.add_parser(
            "enroll",
            help="enroll a folder (one subfolder of pictures per identity), or pictures of one --identity",
            description="Enrolls the largest face of each picture. " + FOLDER_RULE + " The summary lists "
            "every picture that failed; exits 1 when any failed or nothing was stored.",
        )
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a FOLDER with one subfolder of pictures per identity; with --identity, PICTURE files",
    )
    p.add_argument("--identity", metavar=NAME, help="enroll the given pictures as this one person")
    p.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="also read symlinks that point outside the folder (by default they are listed and skipped)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse a picture already enrolled under another identity (default: enroll it and warn)",
    )
    p.set_defaults(run=cmd_enroll)

    p = add_gallery_flags(sub.add_parser("identify", help="who is on these pictures (every face)"))
    p.add_argument("images", nargs="+", metavar=PICTURE, help="pictures; each is answered on its own")
    p.add_argument(
        "--top-k", metavar="N", type=int, default=3, help="nearest identities listed per face (default 3)"
    )
    add_decision_flags(p, "e.g. far_1e-3 (default: the gallery's identification point)")
    p.add_argument("--annotate", metavar="OUT.png", help="draw boxes, landmarks and names into OUT.png")
    p.set_defaults(run=cmd_identify)

    p = add_gallery_flags(
        sub.add_parser("verify", help="same person? two pictures, or a picture and --identity")
    )
    p.add_argument("image_a", metavar=PICTURE, help="a picture (its largest face is compared)")
    p.add_argument("image_b", metavar=f"{PICTURE}_B", nargs="?", help="a second picture (or give --identity)")
    p.add_argument(
        "--identity", metavar=NAME, help="compare PICTURE against this enrolled identity's nearest face"
    )
    add_decision_flags(p, "far_1e-2, far_1e-3, eer, ... (default: the gallery's)")
    p.set_defaults(run=cmd_verify)

    p = add_gallery_flags(
        sub.add_parser("list", help="the enrolled identities and their face counts (--faces: face ids)")
    )
    p.add_argument(
        "--faces", action="store_true", help="also list each identity's face ids, which remove-face takes"
    )
    p.set_defaults(run=cmd_list)

    p = add_gallery_flags(sub.add_parser("remove", help="remove an identity and all its faces"))
    p.add_argument("identity", metavar=NAME, help="the enrolled name, as `facerec list` shows it")
    p.set_defaults(run=cmd_remove)

    p = add_gallery_flags(sub.add_parser("remove-face", help="remove one face of an identity, by its id"))
    p.add_argument(
        "face_id", metavar="FACE_ID", type=face_id, help="the face's id, as `facerec list --faces` shows it"
    )
    p.set_defaults(run=cmd_remove_face)

    p = sub.add_parser(
        "demo", help="the main job: enroll the 5-celebrity train set, identify val, print the table"
    )
    p.add_argument(
        "--gallery", metavar=ADDRESS, help="use a running gallery (else the demo starts its own services)"
    )
    p.add_argument(
        "--detector",
        metavar=ADDRESS,
        default="127.0.0.1:50051",
        help="with --gallery: the detector, for verification pairs",
    )
    p.add_argument(
        "--embedder",
        metavar=ADDRESS,
        default="127.0.0.1:50052",
        help="with --gallery: the embedder, for verification pairs",
    )
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser(
        "eval",
        help="calibrate the thresholds on a labelled folder or a gallery's enrolled faces: operating points, ROC, DET",
        description="Embeds every picture of FOLDER (or reads the enrolled faces of --gallery), scores all "
        "same/different pairs and fits the operating points. " + FOLDER_RULE,
    )
    p.add_argument("folder", nargs="?", metavar=FOLDER, help="identity folders, or sets of them (see above)")
    p.add_argument(
        "--gallery",
        metavar=ADDRESS,
        help="calibrate on a running gallery's enrolled faces instead of a folder",
    )
    p.add_argument(
        "--max-faces",
        metavar="N",
        type=int,
        default=4000,
        help="with --gallery: at most this many faces, drawn at random (all their pairs are held in memory)",
    )
    add_credential_flags(p, "with --gallery: bearer token", "with --gallery: CA certificate to trust")
    add_collection_flag(p, "with --gallery: ")
    p.add_argument(
        "--out",
        metavar=FOLDER,
        help="folder for report.json and roc.png (default ./eval-report, or FOLDER-eval-report beside "
        "FOLDER when the current folder lies inside FOLDER)",
    )
    p.add_argument(
        "--save-threshold",
        action="store_true",
        help="store every operating point: with --gallery in the collection (every replica serves them), "
        "else in FACEREC_HOME/calibration.json, the shipped defaults services start from; the default is "
        "far_1e-3 where the pairs support it",
    )
    p.add_argument(
        "--detector",
        metavar=ADDRESS,
        help="a running detector (default FACEREC_DETECTOR, else 127.0.0.1:50051 when `facerec serve` runs "
        "there; else eval starts its own services)",
    )
    p.add_argument(
        "--embedder",
        metavar=ADDRESS,
        help="a running embedder (default FACEREC_EMBEDDER, else 127.0.0.1:50052, as --detector)",
    )
    p.set_defaults(run=cmd_eval)


def add_credential_flags(p: argparse.ArgumentParser, token_help: str, ca_help: str) -> None:
    """--token and --tls-ca, defaulting to FACEREC_TOKEN and FACEREC_TLS_CA (each help says so)."""
    p.add_argument(
        "--token",
        metavar="TOKEN",
        default=os.environ.get("FACEREC_TOKEN", ""),
        help=f"{token_help} (default FACEREC_TOKEN)",
    )
    p.add_argument(
        "--tls-ca",
        metavar="CA.pem",
        default=os.environ.get("FACEREC_TLS_CA", ""),
        help=f"{ca_help} (default FACEREC_TLS_CA)",
    )
