"""`facerec migrate SOURCE DEST`: copy a gallery, every collection of it, between stores (a SQLite path or a
postgresql:// URL)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_migrate_command(sub: argparse._SubParsersAction[Any]) -> None:
    migrate = sub.add_parser(
        "migrate",
        help="copy a gallery between stores (SQLite path <-> postgresql:// URL) and verify the copy",
        description="Copy every collection (its contract and operating points), its identities, faces (same "
        "ids, bit-exact embeddings, kept pictures) and trained SVM from SOURCE to DEST, then compare counts and "
        "a sample of embeddings and pictures. Stop the galleries using either first.",
    )
    migrate.add_argument("source", metavar="SOURCE", help="SQLite file or postgresql://user@host:port/db")
    migrate.add_argument("dest", metavar="DEST", help="SQLite file or postgresql://user@host:port/db")
    migrate.add_argument("--overwrite", "--force", action="store_true", help="replace a non-empty DEST")
    migrate.add_argument(
        "--sample", metavar="N", type=int, default=1000, help="faces compared bit for bit after the copy"
    )
    migrate.add_argument(
        "--source-password-file", metavar="FILE", default="", help="file holding SOURCE's PostgreSQL password"
    )
    migrate.add_argument(
        "--dest-password-file", metavar="FILE", default="", help="file holding DEST's PostgreSQL password"
    )
    migrate.set_defaults(run=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    from facerec_app.enrolment import count
    from gallery.migrate_collections import migrate_collections

    for done in migrate_collections(
        args.source,
        args.dest,
        overwrite=args.overwrite,
        sample=args.sample,
        source_password_file=args.source_password_file,
        dest_password_file=args.dest_password_file,
    ):
        m = done.migration
        sys.stdout.write(
            f"collection {done.collection} ({done.contract.model}): copied {count(m.identities, 'identity')}, "
            f"{count(m.faces, 'face')} ({m.pictures} with their picture); {m.sampled} sampled embeddings "
            f"identical; SVM {'copied' if m.classifier_copied else 'not copied (none current: Train after)'}"
            f"{'; operating points copied' if done.points_copied else ''}\n"
        )
    return 0
