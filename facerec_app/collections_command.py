"""`facerec collections list|create|delete|reembed`: the collections of a running gallery, each a gallery
of its own pinned to its embedding contract; reembed moves one to a new contract and follows the operation
with a progress bar (stderr; plain lines when stderr is not a terminal) until it is done."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import facerec_client
from facerec_app.enrolment import count
from facerec_app.rpc import gallery_client

# The detectors and alignments the services know (DetectOptions); models are the embedder's to name.
DETECTORS = ("mtcnn", "retinaface")
ALIGNMENTS = ("box", "similarity")


def _contract(c: facerec_client.Contract) -> str:
    return f"{c.model or '(default model)'}, {c.detector or '(default detector)'}, {c.alignment or '(default alignment)'}"


def collection_dict(c: facerec_client.Collection) -> dict[str, Any]:
    return {
        "name": c.name,
        "model": c.contract.model,
        "detector": c.contract.detector,
        "alignment": c.contract.alignment,
        "identities": c.identities,
        "faces": c.faces,
        "faces_without_picture": c.faces_without_picture,
        "state": c.state.value,
        "operation": c.operation,
        "threshold": round(c.threshold, 4),
        "operating_point": c.operating_point,
        "threshold_source": c.threshold_source,
        "keep_source_pictures": c.keep_source_pictures,
    }


def _write_json(data: object) -> None:
    from facerec_app.commands import write_json

    write_json(data)


def cmd_list(args: argparse.Namespace) -> int:
    with gallery_client(args.gallery, args.token, args.tls_ca) as client:
        found = client.call(lambda gallery: gallery.list_collections())
    if args.json:
        _write_json([collection_dict(c) for c in found])
        return 0
    for c in found:
        state = "" if c.state is facerec_client.CollectionState.READY else f"\t{c.state.value} {c.operation}"
        sys.stdout.write(
            f"{c.name}\t{count(c.identities, 'identity')}, {count(c.faces, 'face')}\t{_contract(c.contract)}"
            f"{state}\n"
        )
    sys.stdout.write(f"{count(len(found), 'collection')}\n")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    with gallery_client(args.gallery, args.token, args.tls_ca) as client:
        made = client.call(
            lambda gallery: gallery.create_collection(
                args.name,
                model=args.model,
                detector=args.face_detector,
                alignment=args.alignment,
                keep_source_pictures=args.keep_source_pictures,
            )
        )
    if args.json:
        _write_json(collection_dict(made))
    else:
        sys.stdout.write(f"created {made.name}: {_contract(made.contract)}\n")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with gallery_client(args.gallery, args.token, args.tls_ca) as client:
        removed = client.call(lambda gallery: gallery.delete_collection(args.name))
    if args.json:
        _write_json({"name": args.name, **removed.__dict__})
    else:
        sys.stdout.write(
            f"deleted {args.name} ({count(removed.identities_removed, 'identity')}, "
            f"{count(removed.faces_removed, 'face')})\n"
        )
    return 0


class Progress:
    """The operation's progress on stderr: a bar on a terminal, else one line whenever its stage or count
    changes (a log reads well, and a CI job shows it is alive)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bar: Any = None
        self.last: tuple[str, int, int] | None = None

    def __call__(self, op: facerec_client.Operation) -> None:
        seen = (op.stage, op.faces_done, op.faces_total)
        if seen == self.last:
            return
        self.last = seen
        if sys.stderr.isatty():
            self._bar(op)
        else:
            sys.stderr.write(f"reembed {self.name}: {op.faces_done}/{op.faces_total} faces ({op.stage})\n")

    def _bar(self, op: facerec_client.Operation) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=op.faces_total, desc=f"reembed {self.name}", unit="face", file=sys.stderr)
        self.bar.total = op.faces_total
        self.bar.n = op.faces_done
        self.bar.set_postfix_str(op.stage, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_reembed(args: argparse.Namespace) -> int:
    """Exit 0 once switched (failed faces listed, left out with --drop-failed), 1 when the operation failed
    (the collection is then unchanged)."""
    progress = Progress(args.name)
    with gallery_client(args.gallery, args.token, args.tls_ca) as client:
        started = client.call(
            lambda gallery: gallery.reembed(
                args.name,
                model=args.model,
                detector=args.face_detector,
                alignment=args.alignment,
                drop_failed=args.drop_failed,
            )
        )
        sys.stderr.write(f"started {started.name}\n")
        try:
            done = client.call(
                lambda gallery: gallery.wait_operation(started, poll_s=args.poll_s, on_progress=progress)
            )
        finally:
            progress.close()
    for face in done.failed_faces:
        sys.stderr.write(f"facerec: face {face.face_id} of {face.identity}: {face.reason}\n")
    if args.json:
        _write_json(
            {
                "operation": done.name,
                "done": done.done,
                "error": done.error.__dict__ if done.error else None,
                "faces_total": done.faces_total,
                "faces_done": done.faces_done,
                "failed_faces": [f.__dict__ for f in done.failed_faces],
                "collection": collection_dict(done.collection) if done.collection else None,
            }
        )
    if done.error is not None:
        sys.stderr.write(
            f"facerec: {args.name} was not re-embedded ({done.error.code}): {done.error.message}\n"
        )
        return 1
    if not args.json:
        contract = _contract(done.collection.contract) if done.collection else _contract(done.target)
        failed = (
            f"; {count(len(done.failed_faces), 'face')} left out (listed above)" if done.failed_faces else ""
        )
        sys.stdout.write(
            f"re-embedded {args.name}: {count(done.faces_total, 'face')} to {contract}{failed}\n"
        )
    return 0


def _contract_flags(p: argparse.ArgumentParser, when: str) -> None:
    # dest: `detector` is a service's address in every other command.
    p.add_argument(
        "--detector", dest="face_detector", choices=DETECTORS, default="", help=f"the face detector ({when})"
    )
    p.add_argument("--alignment", choices=ALIGNMENTS, default="", help=f"how crops are cut ({when})")


def add_collections_command(sub: argparse._SubParsersAction[Any]) -> None:
    from facerec_app.command_parsers import NAME, add_gallery_flags

    top = sub.add_parser(
        "collections",
        help="the gallery's collections: list, create, delete, reembed (each pinned to its model)",
        description="A collection is a gallery of its own: its identities, faces, kept face pictures and "
        "operating points, pinned to an embedding contract (model, detector, alignment). `default` always "
        "exists; the other commands take --collection (or FACEREC_COLLECTION).",
    )
    verbs = top.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = add_gallery_flags(
        verbs.add_parser("list", help="every collection with its counts and contract"), False
    )
    p.set_defaults(run=cmd_list)

    p = add_gallery_flags(
        verbs.add_parser("create", help="create a collection pinned to its contract"), False
    )
    p.add_argument("name", metavar=NAME, help="the new collection's name (the identity-name rules)")
    p.add_argument(
        "--model",
        metavar="MODEL",
        default="",
        help="the embedder model, e.g. facenet-keras-128-int8 (default: the embedder's default)",
    )
    _contract_flags(p, "default: the deployment's")
    p.add_argument(
        "--keep-source-pictures",
        action="store_true",
        help="also keep each face's whole source picture, not only the region around the face",
    )
    p.set_defaults(run=cmd_create)

    p = add_gallery_flags(
        verbs.add_parser("delete", help="remove a collection with all its identities, faces and pictures"),
        False,
    )
    p.add_argument("name", metavar=NAME, help="the collection (not `default`)")
    p.set_defaults(run=cmd_delete)

    p = add_gallery_flags(
        verbs.add_parser(
            "reembed",
            help="move a collection to a new contract from its kept face pictures, with a progress bar",
            description="Starts re-embedding NAME under the new contract (the old vectors serve meanwhile, "
            "then the new ones replace them in one step) and follows it until it is done. Faces that "
            "cannot be re-embedded (no kept picture, no face under the new detector) are listed.",
        ),
        False,
    )
    p.add_argument("name", metavar=NAME, help="the collection to move to the new contract")
    p.add_argument(
        "--model", metavar="MODEL", default="", help="the new embedder model (default: keep the current one)"
    )
    _contract_flags(p, "default: keep the current one")
    p.add_argument(
        "--drop-failed",
        action="store_true",
        help="switch even when some faces cannot be re-embedded, leaving them out (else they fail it)",
    )
    p.add_argument(
        "--poll-s",
        metavar="SECONDS",
        type=float,
        default=0.5,
        help="how often to ask for progress (default 0.5)",
    )
    p.set_defaults(run=cmd_reembed)
