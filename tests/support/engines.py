"""Real database engines for tests: a throwaway PostgreSQL 15 cluster, a milvus-lite server and a Milvus
standalone server, each on free ports with a temporary data directory, started and stopped by session
fixtures (tests/conftest.py)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gallery.index_milvus import MilvusSettings

PG_BIN = Path(os.environ.get("FACEREC_PG_BIN", "/usr/lib/postgresql/15/bin"))
MILVUS_LITE = Path(sys.executable).with_name("milvus-lite")
MILVUS_SERVER = Path(sys.executable).with_name("milvus-server")  # the `milvus` package (dev extra)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_milvus_settings(uri: str) -> MilvusSettings:
    """A new collection's settings on the Milvus at uri; FLAT (exact): milvus-lite's filtered HNSW searches
    returned fewer hits than asked."""
    from gallery.index_milvus import MilvusSettings

    return MilvusSettings(uri, collection="t_" + uuid.uuid4().hex[:12], index_type="FLAT", timeout_s=5.0)


def milvus_collection_names(uri: str, within_s: float = 30.0) -> set[str]:
    """The collections on the Milvus at uri. Tried again within within_s: milvus-lite answers a client
    whose channel has pinged it for a long session with GOAWAY (too_many_pings), and pymilvus reconnects
    only on a later call."""
    from pymilvus import MilvusClient

    deadline = time.monotonic() + within_s
    while True:
        try:
            client = MilvusClient(uri=uri)
            try:
                return set(client.list_collections())
            finally:
                client.close()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class PostgresCluster:
    """initdb + pg_ctl on a temporary directory. PostgreSQL refuses to run as root: as root, the server
    runs as the `postgres` user (runuser), which then owns the data directory."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").is_file():
            raise RuntimeError(f"PostgreSQL server binaries are missing in {PG_BIN}; run `make setup`.")
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="facerec-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        self.start()

    def _pg(self, tool: str, *args: str) -> None:
        command = [str(PG_BIN / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self) -> None:
        # fsync off: a throwaway cluster outlives no machine crash, and every test's fresh database and
        # the shutdown checkpoint would otherwise be flushed to disk (tens of seconds on a busy machine).
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
            " -c fsync=off -c full_page_writes=off"
        )
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "120", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class MilvusLiteServer:
    """`milvus-lite server --data-dir DIR --port N`: the Milvus network protocol, served by one process
    (only one process may open a milvus-lite data directory)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="facerec-milvus-"))
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the server process holds it
        self._process = subprocess.Popen(
            [
                str(MILVUS_LITE),
                "server",
                "--data-dir",
                str(self.root / "data"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"milvus-lite exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("milvus-lite did not start listening within 120 s")

    def stop(self) -> None:
        """Kills the server, as a crash or a lost node would (milvus-lite's own shutdown takes ~20 s)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class MilvusStandaloneServer:
    """The Milvus standalone server of the `milvus` package (dev extra): etcd and its message queue embedded
    in one `milvus` binary. The first start runs its launcher, `milvus-server --data DIR --proxy-port N
    ...`, which unpacks the binary and writes its configuration; a restart (after stop(), a crash) runs that
    binary again on the same configuration and data, as the launcher does, because the launcher moves to
    another port when one is still in TIME_WAIT from the killed server's connections."""

    PORTS = (
        "etcd",
        "root-coord",
        "proxy",
        "proxy-internal",
        "query-coord",
        "query-node",
        "index-coord",
        "index-node",
        "data-coord",
        "data-node",
    )
    # Its embedded etcd listens on etcd's default ports (2379, 2380) unless given a configuration file,
    # named by ETCD_CONFIG_PATH (Milvus reads any setting from the environment): then on free ones, so
    # servers can run side by side.
    ETCD_CONFIG = (
        "name: default\n"
        "listen-client-urls: http://127.0.0.1:{client}\n"
        "advertise-client-urls: http://127.0.0.1:{client}\n"
        "listen-peer-urls: http://127.0.0.1:{peer}\n"
        "initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
        "initial-cluster: default=http://127.0.0.1:{peer}\n"
    )

    def __init__(self) -> None:
        if not MILVUS_SERVER.is_file():
            raise RuntimeError(f"{MILVUS_SERVER} is missing: the `milvus` package is in the dev extra.")
        self.root = Path(tempfile.mkdtemp(prefix="facerec-milvus-server-"))
        self.ports = {name: free_port() for name in self.PORTS}
        self.port = self.ports["proxy"]
        etcd_config = self.root / "embedEtcd.yaml"
        etcd_config.write_text(self.ETCD_CONFIG.format(client=self.ports["etcd"], peer=free_port()))
        self._env = {**os.environ, "ETCD_CONFIG_PATH": str(etcd_config)}
        self._process: subprocess.Popen[bytes] | None = None
        self._milvus_pid = 0
        self._health = ""  # its /healthz URL, once the launcher has chosen the metrics port
        self.start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        """Starts it and waits (at most timeout_s) until its /healthz answers OK."""
        log = open(self.root / "process.log", "ab")  # noqa: SIM115 - the server process holds it
        if not self._health:
            command = [str(MILVUS_SERVER), "--data", str(self.root)]
            for name, port in self.ports.items():
                command += [f"--{name}-port", str(port)]
            cwd = None
        else:
            command, cwd = [str(self.root / "bin" / "milvus"), "run", "standalone"], str(self.root)
        # Its own process group: stop() kills the launcher and the milvus binary under it together.
        self._process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=self._env, cwd=cwd, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                logs = self.root / "logs" / "milvus-stdout.log", self.root / "process.log"
                tail = "".join(p.read_text(errors="replace")[-1500:] for p in logs if p.exists())
                self.stop()
                raise RuntimeError(f"Milvus standalone did not start within {timeout_s:.0f} s: {tail}")
            time.sleep(0.2)

    def _ready(self) -> bool:
        if not self._health:
            # The launcher prints the milvus binary's pid once its /healthz answered OK.
            started = re.search(r"Process:\s+(\d+)", (self.root / "process.log").read_text(errors="replace"))
            if started is None:
                return False
            self._milvus_pid = int(started.group(1))
            environ = Path(f"/proc/{self._milvus_pid}/environ").read_bytes().split(b"\0")
            self._env = dict(e.decode().split("=", 1) for e in environ if b"=" in e)
            self._health = f"http://127.0.0.1:{self._env['METRICS_PORT']}/healthz"
            config = (self.root / "configs" / "milvus.yaml").read_text()
            proxy = re.search(r"^proxy:\n(?:(?:[ #].*)?\n)*?  port: (\d+)", config, re.MULTILINE)
            if proxy is None or int(proxy.group(1)) != self.port:
                raise RuntimeError(f"Milvus standalone took another proxy port than {self.port}.")
            return True
        assert self._process is not None
        self._milvus_pid = self._process.pid
        try:
            with urllib.request.urlopen(self._health, timeout=2) as answer:
                return b"OK" in answer.read()
        except OSError:
            return False

    def stop(self) -> None:
        """Kills the server, as a crash or a lost node would (its own shutdown takes many seconds), and
        waits until the milvus binary is gone, so its ports are free for a restart."""
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._process.wait()
        self._process = None
        deadline = time.monotonic() + 30
        while self._milvus_pid and _alive(self._milvus_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._milvus_pid = 0

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether pid is still running (a zombie, killed and not yet reaped by its new parent, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
