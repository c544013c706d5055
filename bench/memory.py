"""Memory: each service's resident memory after many Identify calls against its memory after the first 100.

    .venv/bin/python -m bench.memory                  # 10 000 calls (several minutes)
    .venv/bin/python -m bench.memory --calls 2000     # shorter

Starts the three services (facerec_app.supervisor.local_services), enrolls the train set, Train, then
identifies the 118 pictures round and round from --clients threads. Prints VmRSS of each service
after 100 calls and every --every calls, the growth against the 100-call figure and whether it stays
within 10% (no leak). The baseline is the service's own memory after 100 calls: there is no
in-process figure to compare with.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from facerec_app.soak import BOUND, enroll_and_train, identify_calls, rss_mib


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000, help="Identify calls in all (default 10000)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--every", type=int, default=1000, help="sample memory every this many calls")
    args = parser.parse_args(argv)
    out = sys.stdout.write

    from facerec import assets
    from facerec_app.supervisor import local_services

    fetched = assets.fetch(assets.facerec_home(os.environ))
    train = [(i, p.read_bytes()) for i, p in assets.labelled_images(fetched.split("train"))]
    val = [(i, p.read_bytes()) for i, p in assets.labelled_images(fetched.split("val"))]
    datas = [d for _, d in [*train, *val]]

    with local_services() as addresses:
        pids = {p.name: p.process.pid for p in addresses.processes}
        enroll_and_train(addresses.gallery, train)
        identify_calls(addresses.gallery, datas, 100, args.clients)
        first = {name: rss_mib(pid) for name, pid in pids.items()}
        out(f"{args.calls} Identify calls from {args.clients} clients; VmRSS MiB\n")
        out(f"{'calls':>7}{'s':>7}" + "".join(f"{name:>11}" for name in pids) + "\n")
        out(f"{100:>7}{0:>7.0f}" + "".join(f"{first[name]:>11.0f}" for name in pids) + "\n")
        done, start = 100, time.perf_counter()
        last = first
        while done < args.calls:
            step = min(args.every - done % args.every, args.calls - done)
            identify_calls(addresses.gallery, datas, step, args.clients, start_at=done)
            done += step
            last = {name: rss_mib(pid) for name, pid in pids.items()}
            out(
                f"{done:>7}{time.perf_counter() - start:>7.0f}"
                + "".join(f"{last[name]:>11.0f}" for name in pids)
                + "\n"
            )
            sys.stdout.flush()
    out("\nservice     after 100   after all   growth  within 10%\n")
    ok = True
    for name in pids:
        growth = last[name] / first[name] - 1.0
        ok &= growth <= BOUND
        out(f"{name:<10}{first[name]:>10.0f}{last[name]:>12.0f}{100 * growth:>8.1f}%  {growth <= BOUND}\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
