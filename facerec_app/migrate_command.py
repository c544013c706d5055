"""`facerec migrate SOURCE DEST`: copy a gallery between stores (a SQLite path or a postgresql:// URL)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_migrate_command(sub: argparse._SubParsersAction[Any]) -> None:
    migrate = sub.add_parser(
        "migrate",
        help="copy a gallery between stores (SQLite path <-> postgresql:// URL) and verify the copy",
        description="Copy identities, faces (same ids, bit-exact embeddings) and the trained SVM from SOURCE "
        "to DEST, then compare counts and a sample of embeddings. Stop the galleries using either first.",
    )
    migrate.add_argument("source", metavar="SOURCE", help="SQLite file or postgresql://user@host:port/db")
    migrate.add_argument("dest", metavar="DEST", help="SQLite file or postgresql://user@host:port/db")
    migrate.add_argument(
        "--model", metavar="MODEL", default="", help="the embedding model (default: the source's)"
    )
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
    from gallery.migrate import migrate
    from gallery.stores import open_store, stored_model

    model = args.model or stored_model(args.source, args.source_password_file)
    with (
        open_store(args.source, model, password_file=args.source_password_file) as source,
        open_store(args.dest, model, password_file=args.dest_password_file) as dest,
    ):
        done = migrate(source, dest, overwrite=args.overwrite, sample=args.sample)
        sys.stdout.write(
            f"copied {count(done.identities, 'identity')}, {count(done.faces, 'face')} "
            f"from {source.location} to {dest.location}; "
            f"{done.sampled} sampled embeddings identical; "
            f"SVM {'copied' if done.classifier_copied else 'not copied (none current: Train after)'}\n"
        )
    return 0
