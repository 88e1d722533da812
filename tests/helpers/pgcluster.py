"""Throwaway PostgreSQL clusters for the tests and for ``.ci/run``: made by ``initdb`` in a
directory of their own, run as a non-root account (PostgreSQL refuses root), listening on
127.0.0.1 only, on a free port, with trust authentication, stopped whatever happens.

    pgcluster.py start DIR     # prints the URL; the cluster runs until `stop DIR`
    pgcluster.py stop DIR

As root, the clusters run as the account ``$RUNJOURNAL_PG_ACCOUNT`` (default ``rjpg``), made
with ``useradd`` if it is missing. The server binaries are found with ``pg_config
--bindir``, or in ``/usr/lib/postgresql/<newest>/bin`` (Debian), or ``$RUNJOURNAL_PG_BIN``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ACCOUNT = os.environ.get("RUNJOURNAL_PG_ACCOUNT", "rjpg")


def bindir() -> Path | None:
    """Where initdb and pg_ctl are, or None."""
    given = os.environ.get("RUNJOURNAL_PG_BIN")
    if given:
        return Path(given)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def account() -> str | None:
    """The account clusters run as: the current one, or (as root) ``ACCOUNT``, made if missing."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(ACCOUNT)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ACCOUNT], check=True)
    return ACCOUNT


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One cluster in ``directory`` (its data in ``directory/data``)."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = Path(directory)
        self.data = self.directory / "data"
        self.bin = bindir()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb): install postgresql, or set RUNJOURNAL_PG_BIN")
        self.user = account()
        port_file = self.directory / "port"
        self.port = port or (int(port_file.read_text()) if port_file.exists() else free_port())

    @property
    def url(self) -> str:
        return f"postgresql://{self.user or pwd.getpwuid(os.geteuid()).pw_name}@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in argv]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout, cwd="/")

    def _own(self, path: Path) -> None:
        if self.user:
            info = pwd.getpwnam(self.user)
            os.chown(path, info.pw_uid, info.pw_gid)

    def init(self, **conf: str) -> Cluster:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        self._own(self.directory)
        (self.directory / "port").write_text(str(self.port))
        self._run(self.bin / "initdb", "--no-sync", "--auth=trust", "--username", self.user or pwd.getpwuid(os.geteuid()).pw_name, "-D", self.data)
        self.configure(listen_addresses="'127.0.0.1'", port=str(self.port), unix_socket_directories=f"'{self.directory}'", fsync="on", **conf)
        return self

    def configure(self, **conf: str) -> None:
        with open(self.data / "postgresql.auto.conf", "a") as f:
            for key, value in conf.items():
                f.write(f"{key} = {value}\n")

    def start(self) -> Cluster:
        self._run(self.bin / "pg_ctl", "-D", self.data, "-l", self.directory / "log", "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", check=False)

    def kill(self) -> None:
        """SIGKILL the postmaster and every process it started (backends, the WAL sender), as a
        machine that dies takes them all at once: a crash, not a shutdown."""
        pid = self.pid()
        if pid:
            children = [int(d) for d in os.listdir("/proc") if d.isdigit() and _parent(int(d)) == pid]
            os.kill(pid, signal.SIGKILL)
            for child in children:
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def standby(self, directory: Path, port: int | None = None, name: str = "standby") -> Cluster:
        """A streaming standby of this cluster (``pg_basebackup -R``), started."""
        other = Cluster(directory, port)
        other.directory.mkdir(parents=True, exist_ok=True)
        other.directory.chmod(0o755)
        other._own(other.directory)
        (other.directory / "port").write_text(str(other.port))
        other._run(
            self.bin / "pg_basebackup", "-h", "127.0.0.1", "-p", self.port, "-U", self.user or pwd.getpwuid(os.geteuid()).pw_name,
            "-D", other.data, "-R", "-X", "stream", "--no-sync",
        )  # fmt: skip
        # its own settings: the primary's copy of synchronous_standby_names would make every
        # commit on it wait, once promoted, for a standby it does not have
        other.configure(synchronous_standby_names="''", port=str(other.port), unix_socket_directories=f"'{other.directory}'", primary_conninfo=f"'host=127.0.0.1 port={self.port} user={self.user or pwd.getpwuid(os.geteuid()).pw_name} application_name={name}'")
        return other.start()

    def promote(self) -> None:
        self._run(self.bin / "pg_ctl", "-D", self.data, "-w", "-t", "60", "promote")

    def sql(self, statement: str) -> str:
        out = self._run(self.bin / "psql", "-h", "127.0.0.1", "-p", self.port, "-U", self.user or pwd.getpwuid(os.geteuid()).pw_name, "-d", "postgres", "-Atc", statement)
        return out.stdout.strip()

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def main() -> None:
    command, directory = sys.argv[1], Path(sys.argv[2])
    if command == "start":
        cluster = Cluster(directory).init()
        try:
            cluster.start()
        except subprocess.CalledProcessError as e:
            log = cluster.directory / "log"
            sys.exit(f"pg_ctl start failed: {e.stderr.strip()}\n{log.read_text() if log.exists() else ''}")
        print(cluster.url)
    elif command == "stop":
        if directory.exists():
            Cluster(directory).remove()
    else:
        sys.exit(f"unknown command {command!r}: start DIR | stop DIR")


if __name__ == "__main__":
    main()
