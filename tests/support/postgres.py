"""A throwaway PostgreSQL cluster from Debian's packages, on a free loopback port.

initdb refuses to run as root, so as root the cluster belongs to the `postgres` user (commands run
through `runuser`); otherwise it belongs to whoever runs the tests.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from toolfabric_server.devstack.processes import free_port, port_open, wait_until


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PostgresServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="toolfabric-pg-"))
        self._as_postgres = os.geteuid() == 0

    @staticmethod
    def available() -> bool:
        return _bin("initdb") is not None and _bin("pg_ctl") is not None

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://toolfabric@127.0.0.1:{self.port}/toolfabric"

    def start(self) -> PostgresServer:
        """Creates the cluster on first start; a later start (after `halt`) reuses its data."""
        data = self.dir / "data"
        fresh = not data.exists()
        if fresh:
            if self._as_postgres:
                shutil.chown(self.dir, "postgres", "postgres")
            self._run(str(_bin("initdb")), "-D", str(data), "-U", "toolfabric", "--auth=trust", "-E", "UTF8",
                      "--no-instructions")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(_bin("pg_ctl")), "-D", str(data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        wait_until(lambda: port_open(self.port), 30, "postgresql")
        if fresh:
            self._run(str(_bin("createdb")), "-h", "127.0.0.1", "-p", str(self.port), "-U", "toolfabric",
                      "toolfabric")
        return self

    def halt(self) -> None:
        """Stops the server, keeping its data (an outage)."""
        self._run(str(_bin("pg_ctl")), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def stop(self) -> None:
        try:
            self._run(str(_bin("pg_ctl")), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
