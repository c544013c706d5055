"""`facerec serve` on ports in use says so in one sentence, before any service starts; a child that
exits while starting is reported as such, not as a timeout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from facerec_app.supervisor import FRAMEWORK_NOISE, ServiceProcess, StartError, check_ports_free


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_port_in_use_is_named_before_anything_starts(taken_port: int) -> None:
    with pytest.raises(StartError, match=rf"Port {taken_port} \(embedder\) is already in use"):
        check_ports_free("127.0.0.1", {"detector": 0, "embedder": taken_port})
    check_ports_free("127.0.0.1", {"detector": 0})  # 0 = any free port: nothing to check


def test_serve_on_a_port_in_use_is_one_sentence_and_exit_1(taken_port: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facerec_app.cli", "serve", "--gallery-port", str(taken_port)]
        + ["--detector-port", "0", "--embedder-port", "0"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"facerec: Port {taken_port} (gallery) is already in use on 127.0.0.1: is another `facerec serve` "
        "running? Stop it, or choose another port with --gallery-port."
    ]
    assert done.stdout == ""


def test_a_child_that_exits_while_starting_is_not_reported_as_slow() -> None:
    child = ServiceProcess.start("json.tool", ["/no/such/file.json"])
    with pytest.raises(
        StartError, match=r"The json.tool exited while starting \(last output: .*No such file"
    ):
        child.wait_ready(120.0)


def test_tensorflow_start_up_chatter_is_not_echoed_but_real_messages_are() -> None:
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1796111037.766767   30522 port.cc:153] oneDNN custom operations are on. You may see ...\n",
        "W0000 00:00:1796111037.766767   30522 cpu_feature_guard.cc:210] This TensorFlow binary is optimized\n",
    ]
    kept = [
        "E0000 00:00:1796111037.766767   30522 cuda_executor.cc:1] a real error\n",
        "2026-12-01 07:44:10,604 INFO __main__: warmed up; serving\n",
        "OSError: [Errno 98] Address already in use\n",
    ]
    assert [bool(FRAMEWORK_NOISE.match(line)) for line in noise + kept] == [True] * 3 + [False] * 3


@pytest.mark.parametrize("service", ["detector", "embedder", "gallery"])
def test_one_service_on_a_port_in_use_says_so_before_loading_anything(taken_port: int, service: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facerec_app.cli", "serve", service, "--host", "127.0.0.1"]
        + ["--port", str(taken_port)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"{service}: Port {taken_port} is already in use on 127.0.0.1.\n"
