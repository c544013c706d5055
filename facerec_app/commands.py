"""The client commands of `facerec`: enroll, identify, verify, list, remove (a running gallery), demo and eval."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from functools import partial
from pathlib import Path
from typing import Any

import facerec_client
from facerec_app.enrolment import count, enroll_pairs, failures, summary
from facerec_app.folders import FOLDER_RULE, Skipped, walk
from facerec_app.rpc import (
    ABOUT_THE_REQUEST,
    ClientError,
    gallery_client,
    identify_one,
    read_image,
)

DEFAULT_GALLERY = "127.0.0.1:50053"


def required_name(name: str, what: str) -> str:
    """A name as given, refused when empty or blank: the gallery would refuse it, or store a name no one
    can type back."""
    if not name.strip():
        raise ClientError(f"{what} needs a name that is not empty or blank.")
    return name


def write_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def box_dict(box: facerec_client.Box | None) -> dict[str, float]:
    if box is None:
        box = facerec_client.Box(x=0.0, y=0.0, width=0.0, height=0.0)
    return {
        "x": round(box.x, 1),
        "y": round(box.y, 1),
        "width": round(box.width, 1),
        "height": round(box.height, 1),
    }


def cmd_enroll(args: argparse.Namespace) -> int:
    """The summary always comes, with the pictures that failed; exit 1 when any failed or none was stored."""
    skipped: list[Skipped] = []
    if args.identity is not None:
        identity = required_name(args.identity, "--identity")
        pairs = [(identity, Path(p)) for p in args.paths]
        missing = [str(p) for _, p in pairs if not p.is_file()]
        if missing:
            raise ClientError(f"{missing[0]} is not a picture file (with --identity, give pictures).")
        what = f"{count(len(pairs), 'picture')} of {identity}"
    else:
        if len(args.paths) != 1:
            raise ClientError(
                "Give one folder (one subfolder per identity), or --identity NAME and pictures."
            )
        found = walk(Path(args.paths[0]), follow_symlinks=args.follow_symlinks)
        pairs, skipped = found.pairs, found.skipped
        what = f"{count(len(pairs), 'picture')} of {count(len({who for who, _ in pairs}), 'identity')}"
    with gallery_client(args.gallery, args.token, args.tls_ca, args.collection) as client:
        report = enroll_pairs(client, pairs, strict=args.strict)
    failed = failures(report, skipped)
    if args.json:
        counts = {name.lower(): n for name, n in sorted(report.outcomes.items())}
        write_json(
            {
                "images": len(pairs),
                "stored": report.stored,
                **counts,
                "failed": [{"path": str(f.path), "reason": f.reason} for f in failed],
                "not_sent": report.not_sent,
            }
        )
    else:
        sys.stdout.write(f"{what}: {summary(report, skipped)}\n")
    for failure in failed:
        sys.stderr.write(f"facerec: {failure.path}: {failure.reason}\n")
    if report.stopped is not None:
        sys.stderr.write(f"facerec: {report.stopped} {count(report.not_sent, 'picture')} not sent.\n")
        return 1
    if not report.stored:
        sys.stderr.write("facerec: nothing was enrolled (see the reasons above).\n")
        return 1
    if failed:
        sys.stderr.write(f"facerec: {count(len(failed), 'picture')} failed (listed above).\n")
        return 1
    return 0


def face_dict(face: facerec_client.Face) -> dict[str, Any]:
    out: dict[str, Any] = {
        "identity": face.identity,
        "known": face.known,
        "distance": round(face.distance, 4),
        "confidence": round(face.confidence, 4),
        "box": box_dict(face.box),
        "candidates": [{"identity": c.identity, "distance": round(c.distance, 4)} for c in face.candidates],
    }
    if face.not_identifiable:
        out["not_identifiable"] = face.not_identifiable_reason
    return out


def cmd_identify(args: argparse.Namespace) -> int:
    """Every picture is answered on its own: a bad one is named on stderr, the others still identified."""
    paths = [Path(p) for p in args.images]
    if args.annotate and len(paths) != 1:
        raise ClientError("--annotate takes exactly one picture.")
    report: list[dict[str, Any]] = []
    failed = 0
    with gallery_client(args.gallery, args.token, args.tls_ca, args.collection) as client:
        for path in paths:
            try:
                reply = identify_one(client, path, args.top_k, args.threshold, args.operating_point)
            except ClientError as exc:
                if exc.code not in ABOUT_THE_REQUEST:
                    raise  # the gallery is down or refuses us: no later picture would fare better
                failed += 1
                message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
                sys.stderr.write(f"facerec: {message}\n")
                report.append({"image": str(path), "error": message})
                continue
            report.append(
                {
                    "image": str(path),
                    "threshold": round(reply.threshold, 4),
                    "operating_point": reply.operating_point,
                    "faces": [face_dict(f) for f in reply.faces],
                }
            )
            if args.annotate:
                save_annotated(path, list(reply.faces), Path(args.annotate))
            if not args.json:
                write_identified(report[-1])
    if args.json:
        write_json(report)  # a list, one entry per picture, however many were given
    return 1 if failed else 0


def write_identified(item: dict[str, Any]) -> None:
    if not item["faces"]:
        sys.stdout.write(f"{item['image']}: no face\n")
    for face in item["faces"]:
        b = face["box"]
        where = f"box {b['x']:.0f},{b['y']:.0f} {b['width']:.0f}x{b['height']:.0f}"
        if face.get("not_identifiable"):
            sys.stdout.write(f"{item['image']}: not identifiable ({face['not_identifiable']})  {where}\n")
        elif face["known"]:
            sys.stdout.write(
                f"{item['image']}: {face['identity']}  distance {face['distance']:.3f}  {where}\n"
            )
        else:
            nearest = face["candidates"][0] if face["candidates"] else None
            hint = f" (nearest {nearest['identity']} at {nearest['distance']:.3f})" if nearest else ""
            sys.stdout.write(f"{item['image']}: unknown{hint}  {where}\n")


def save_annotated(path: Path, faces: list[facerec_client.Face], out: Path) -> None:
    from facerec.errors import FacerecError
    from facerec.images import decode_image
    from facerec_app.annotate import annotate

    try:
        rgb = decode_image(read_image(path))
    except FacerecError as exc:
        raise ClientError(f"Cannot annotate {path}: {exc}") from None
    annotate(rgb, faces).save(out, format="PNG")


def named_pictures(message: str, names: dict[str, str]) -> str:
    """The gallery's message with its field names (image_a, image_b) replaced by the paths the user typed."""
    for field, path in names.items():
        message = re.sub(rf"\b{field}\b", path.replace("\\", "\\\\"), message)  # a path's \ stays a \
    return message


def cmd_verify(args: argparse.Namespace) -> int:
    if args.identity is not None and args.image_b:
        raise ClientError("Give a second picture or --identity, not both.")
    if args.identity is None and not args.image_b:
        raise ClientError(
            "Give a second picture, or --identity NAME to compare against an enrolled identity."
        )
    identity = required_name(args.identity, "--identity") if args.identity is not None else ""
    picture_a = read_image(Path(args.image_a))
    picture_b = read_image(Path(args.image_b)) if args.image_b else None
    names = {"image_a": args.image_a, **({"image_b": args.image_b} if args.image_b else {})}
    with gallery_client(args.gallery, args.token, args.tls_ca, args.collection) as client:
        try:
            reply = client.call(
                lambda gallery: gallery.verify(
                    picture_a,
                    picture_b,
                    identity=identity,
                    threshold=args.threshold,
                    operating_point=args.operating_point,
                )
            )
        except ClientError as exc:
            raise ClientError(named_pictures(str(exc), names), exc.code) from None
    for path, faces in ((args.image_a, reply.faces_a), (args.image_b, reply.faces_b)):
        if faces > 1:
            sys.stderr.write(f"note: {path} holds {count(faces, 'face')}; its largest was compared.\n")
    if args.json:
        write_json(
            {
                "match": reply.match,
                "distance": round(reply.distance, 4),
                "threshold": round(reply.threshold, 4),
                "faces_a": reply.faces_a,
                "faces_b": reply.faces_b,
                "operating_point": reply.operating_point,
            }
        )
    else:
        verdict = "same person" if reply.match else "different people"
        point = f" at {reply.operating_point}" if reply.operating_point else ""
        sys.stdout.write(
            f"{verdict}: distance {reply.distance:.3f} (threshold {reply.threshold:.3f}{point})\n"
        )
    return 0 if reply.match else 3


def cmd_list(args: argparse.Namespace) -> int:
    """Identities and face counts; with --faces, each identity's face ids (what remove-face takes)."""
    rows: list[tuple[str, int]] = []
    face_ids: dict[str, list[int]] = {}
    with gallery_client(args.gallery, args.token, args.tls_ca, args.collection) as client:
        rows.extend((i.name, i.face_count) for i in client.call(lambda gallery: gallery.identities()))
        if args.faces:
            for name, _ in rows:
                got = client.call(partial(facerec_client.Gallery.identity, name=name))
                face_ids[name] = sorted(f.face_id for f in got.faces)
    if args.json:
        write_json(
            [
                {"identity": name, "faces": n, **({"face_ids": face_ids[name]} if args.faces else {})}
                for name, n in rows
            ]
        )
    else:
        for name, n in rows:
            ids = f"\tface ids {' '.join(map(str, face_ids[name]))}" if args.faces else ""
            sys.stdout.write(f"{name}\t{count(n, 'face')}{ids}\n")
        sys.stdout.write(f"{count(len(rows), 'identity')}\n")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    identity = required_name(args.identity, "remove")
    with gallery_client(args.gallery, args.token, args.tls_ca, args.collection) as client:
        removed = client.call(lambda gallery: gallery.remove_identity(identity))
    if args.json:
        write_json({"identity": identity, "faces_removed": removed})
    else:
        sys.stdout.write(f"removed {identity} ({count(removed, 'face')})\n")
    return 0


def cmd_remove_face(args: argparse.Namespace) -> int:
    with gallery_client(args.gallery, args.token, args.tls_ca, args.collection) as client:
        owner = client.call(lambda gallery: gallery.remove_face(args.face_id))
    if args.json:
        write_json({"face_id": args.face_id, "identity": owner})
    else:
        sys.stdout.write(f"removed face {args.face_id} of {owner}\n")
    return 0


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


def cmd_demo(args: argparse.Namespace) -> int:
    from facerec_app.demo import run_demo

    return run_demo(args)


def cmd_eval(args: argparse.Namespace) -> int:
    from facerec_app.evaluate_command import run_eval

    return run_eval(args)


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
    p.add_argument(
        "--token",
        metavar="TOKEN",
        default=os.environ.get("FACEREC_TOKEN", ""),
        help="bearer token for a gallery that requires one (default FACEREC_TOKEN)",
    )
    p.add_argument(
        "--tls-ca",
        metavar="CA.pem",
        default=os.environ.get("FACEREC_TLS_CA", ""),
        help="CA certificate (PEM) to trust: talk TLS to the gallery (default FACEREC_TLS_CA)",
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
    p.add_argument(
        "--token",
        metavar="TOKEN",
        default=os.environ.get("FACEREC_TOKEN", ""),
        help="with --gallery: bearer token (default FACEREC_TOKEN)",
    )
    p.add_argument(
        "--tls-ca",
        metavar="CA.pem",
        default=os.environ.get("FACEREC_TLS_CA", ""),
        help="with --gallery: CA certificate to trust (default FACEREC_TLS_CA)",
    )
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
