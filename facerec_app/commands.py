"""What the client commands of `facerec` do: enroll, identify, verify, list, remove, remove-face (a running
gallery), demo and eval; their flags are in facerec_app/command_parsers.py."""

from __future__ import annotations

import argparse
import json
import re
import sys
from functools import partial
from pathlib import Path
from typing import Any

import facerec_client
from facerec_app.enrolment import count, enroll_pairs, failures, summary
from facerec_app.folders import Skipped, walk
from facerec_app.rpc import (
    ABOUT_THE_REQUEST,
    ClientError,
    gallery_client,
    identify_one,
    read_image,
)


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


def cmd_demo(args: argparse.Namespace) -> int:
    from facerec_app.demo import run_demo

    return run_demo(args)


def cmd_eval(args: argparse.Namespace) -> int:
    from facerec_app.evaluate_command import run_eval

    return run_eval(args)
