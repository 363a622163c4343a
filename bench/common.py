"""Shared bench plumbing: a fresh database, a real uvicorn server on loopback, keys, RSS."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, make_url, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.adapters.db import make_engine, make_session_factory, migrate, transaction  # noqa: E402
from service.ports import SystemClock  # noqa: E402
from service.services.api_keys import Scope, create_key  # noqa: E402


def postgres_base_url() -> str:
    url = os.environ.get("UPSHIFT_TEST_DATABASE_URL")
    if not url:
        sys.exit(
            "set UPSHIFT_TEST_DATABASE_URL to a PostgreSQL URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )
    return url


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path | None = None) -> Iterator[str]:
    """A new, migrated database ('postgres' or 'sqlite'), dropped afterwards."""
    if kind == "sqlite":
        folder = workdir or Path(os.environ.get("TMPDIR", "/tmp"))
        path = folder / f"upshift-bench-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        try:
            yield url
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    base = make_url(postgres_base_url())
    name = f"upshift_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def new_key(engine: Engine, *scopes: Scope) -> str:
    with transaction(make_session_factory(engine)) as session:
        return create_key(session, SystemClock(), "bench", frozenset(scopes))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]

    def rss_mb(self) -> float:
        """Resident set size of the server process now, in MiB (from /proc)."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def peak_rss_mb(self) -> float:
        """The peak resident set size of the server process so far, in MiB (VmHWM)."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0


@contextlib.contextmanager
def uvicorn_server(
    database_url: str,
    *,
    app: str | None = None,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[Server]:
    """uvicorn on 127.0.0.1 serving the app (or another ASGI app path) with `workers` worker
    processes (1: one process), stopped after."""
    port = free_port()
    env = {
        **os.environ,
        "UPSHIFT_DATABASE_URL": database_url,
        "UPSHIFT_CATALOG_PATH": str(REPO / "pricing_catalog" / "catalog.yaml"),
        "UPSHIFT_TOKEN_SECRET": "bench-token-secret",
        "UPSHIFT_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    target = app or "service.api.app:create_app"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if app is None:
        command.insert(4, "--factory")
    process = subprocess.Popen(command, cwd=REPO, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the bench server did not start")
            time.sleep(0.2)
        yield Server(base_url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def print_result(figures: dict[str, float | int | None]) -> None:
    """Human-readable lines, then the last line: the figures as one JSON object."""
    for key, value in figures.items():
        print(f"{key:>32}: {value}")
    print(json.dumps(figures, sort_keys=True))
