"""The `facerec` command: fetch the assets, run the services, and talk to a running gallery."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from facerec import assets
from facerec_app.supervisor import MODULES

log = logging.getLogger(__name__)


class CliError(Exception):
    """A mistake the user can fix; printed as one sentence, exit code 2 unless given."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def cmd_fetch(args: argparse.Namespace) -> int:
    home = assets.facerec_home(os.environ)
    try:
        fetched = assets.fetch(home)
    except assets.FetchError as exc:
        raise CliError(str(exc), exit_code=1) from None
    sys.stdout.write(f"weights  {fetched.facenet_h5} (sha256 ok)\ndata     {fetched.dataset}\n")
    sys.stdout.write(f"weights  {fetched.retinaface_onnx} (sha256 ok)\n")
    if args.calibration:
        from facerec_app.calibration_crops import ensure_calibration_set

        sys.stdout.write(f"int8 calibration crops {ensure_calibration_set(fetched)}\n")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import importlib

    from facerec_app.supervisor import MODULES, serve_all

    if args.service in MODULES:
        module = importlib.import_module(f"{MODULES[args.service]}.__main__")
        module.main(args.rest)
        return 0
    return serve_all(args.rest)


def cmd_health(args: argparse.Namespace) -> int:
    from facerec_app.health_check import check, check_running

    if args.address is None:  # a container's HEALTHCHECK: whichever service runs beside it
        serving, detail = check_running(args.timeout)
        sys.stdout.write(f"{detail}\n")
        return 0 if serving else 1
    serving, detail = check(args.address, args.service, args.timeout)
    sys.stdout.write(f"{args.address} {detail}\n")
    return 0 if serving else 1


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes are one sentence on stderr and exit 2, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`).\n")


def serve_flags_help() -> str:
    """The flags of `facerec serve` with every service, for `facerec serve --help`."""
    from facerec_app.supervisor import serve_parser

    options = serve_parser().format_help().split("options:\n", 1)[1].splitlines()
    return "flags of all of them (`facerec serve [all] FLAGS`):\n" + "\n".join(
        line for line in options if "--help" not in line and "show this help" not in line
    )


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facerec")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="facerec",
        description="Face recognition as gRPC services: detect (RetinaFace or MTCNN), embed (FaceNet), and a gallery.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO), not only problems")
    parser.add_argument("--version", action="version", version=f"facerec {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    fetch = sub.add_parser("fetch", help="download and verify the weights and the 5-celebrity data set")
    fetch.add_argument(
        "--no-calibration",
        dest="calibration",
        action="store_false",
        help="skip cutting the int8 calibration crops (they need the detector installed)",
    )
    fetch.set_defaults(run=cmd_fetch)

    serve = sub.add_parser(
        "serve",
        help="run the services (all, or one)",
        description="Run every service (default) or one of them. Flags after the name go to that service "
        "(`facerec serve detector --help` lists the detector's).",
        epilog=serve_flags_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "service",
        nargs="?",
        default="all",
        choices=["all", *MODULES],
        help="which service to run: all (the default) or one",
    )
    serve.add_argument(
        "rest", nargs=argparse.REMAINDER, help="that service's own flags, or those of all of them below"
    )
    serve.set_defaults(run=cmd_serve)

    health = sub.add_parser(
        "health",
        help="exit 0 when the service at HOST:PORT reports SERVING (no HOST:PORT: the one running here)",
    )
    health.add_argument(
        "address",
        metavar="HOST:PORT",
        nargs="?",
        help="the service's host and port; without it, the `facerec serve` process running on this "
        "machine (a container's own service: gRPC health, or the gateway's /healthz)",
    )
    health.add_argument(
        "--service",
        metavar="SERVICE",
        default="",
        help="a gRPC service name such as facerec.v1.Gallery (default: the server as a whole)",
    )
    health.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=3.0,
        help="seconds to wait for the answer (default 3)",
    )
    health.set_defaults(run=cmd_health)

    from facerec_app.export_command import add_export_command

    add_export_command(sub)
    from facerec_app.migrate_command import add_migrate_command

    add_migrate_command(sub)
    _add_client_commands(sub)
    in_newcomer_order(sub)
    return parser


# `facerec --help` lists the commands in the order a newcomer uses them: set up, run, try, use, tune, operate.
NEWCOMER_ORDER = (
    "fetch",
    "export",
    "serve",
    "demo",
    "enroll",
    "identify",
    "verify",
    "list",
    "remove",
    "remove-face",
    "collections",
    "eval",
    "health",
    "migrate",
)


def in_newcomer_order(sub: argparse._SubParsersAction[Any]) -> None:
    """Reorders the help's command list (argparse shows them as added; they are added by module)."""
    actions = sub._choices_actions
    rank = {name: i for i, name in enumerate(NEWCOMER_ORDER)}
    actions.sort(key=lambda action: rank.get(action.dest, len(rank)))


def _add_client_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """The commands that talk to a gallery, the demo and eval."""
    from facerec_app.collections_command import add_collections_command
    from facerec_app.command_parsers import add_commands

    add_commands(sub)
    add_collections_command(sub)


def with_default_service(argv: Sequence[str]) -> list[str]:
    """`facerec serve --flag ...` means `facerec serve all --flag ...` (argparse can't infer that itself)."""
    argv = list(argv)
    command = next((i for i, token in enumerate(argv) if not token.startswith("-")), None)
    if command is not None and argv[command] == "serve":
        i = command + 1
        if i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-h", "--help"):
            argv.insert(i, "all")
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(with_default_service(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run: Callable[[argparse.Namespace], int] = args.run
    from facerec.errors import FacerecError
    from facerec_app.rpc import ClientError
    from facerec_app.supervisor import StartError

    try:
        return run(args)
    except CliError as exc:
        sys.stderr.write(f"facerec: {exc}\n")
        return exc.exit_code
    except (ClientError, StartError, assets.FetchError, FacerecError) as exc:
        sys.stderr.write(f"facerec: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
