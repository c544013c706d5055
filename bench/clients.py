"""Closed-loop concurrent clients for the benchmarks: N threads, each with its own channel, share a work list."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import grpc

T = TypeVar("T")


def closed_loop(
    address: str,
    stub_class: Callable[[grpc.Channel], object],
    work: Sequence[T],
    clients: int,
    call: Callable[[object, T], float | int | bool],
) -> tuple[float, list[float], float]:
    """Sends every item once, `clients` at a time; each client sends its next item when the last returns.

    call(stub, item) makes one request and returns what to add up (faces found, right answers).
    Returns (wall seconds, per-request latencies in seconds, the sum of call's results).
    """
    latencies: list[float] = []
    total = [0.0]
    lock = threading.Lock()
    next_index = [0]

    def client() -> None:
        with grpc.insecure_channel(address) as channel:
            stub = stub_class(channel)
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(work):
                    return
                start = time.perf_counter()
                value = call(stub, work[i])
                took = time.perf_counter() - start
                with lock:
                    latencies.append(took)
                    total[0] += value

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, total[0]
