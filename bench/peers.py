"""Peers that benchmarks run beside smartq, each in a venv of its own made once and cached.

The venv lives under ``.bench-peers/`` at the repository's root (gitignored), named by the
peer's version (``.bench-peers/dask-2026.8.0``), so smartq's own venv never gets the peer's
packages. A venv is used only once its install finished (a marker file); a half-made one is
made again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / ".bench-peers"
DASK_VERSION = "2026.8.0"
DASK_DRIVER = Path(__file__).resolve().with_name("dask_driver.py")


class PeerError(Exception):
    pass


def peer_python(name: str, requirements: list[str]) -> Path:
    """The python of the venv ``.bench-peers/<name>`` with ``requirements``, made if missing."""
    venv = PEERS / name
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    print(f"smartq bench: making the peer venv {venv}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    marker.write_text("\n".join(requirements) + "\n")
    return python


def dask_python() -> Path:
    return peer_python(
        f"dask-{DASK_VERSION}",
        [f"dask=={DASK_VERSION}", f"distributed=={DASK_VERSION}", "psutil"],
    )


class DaskPeer:
    """bench/dask_driver.py in the Dask venv: one JSON command a line, one JSON answer a line.

    ``python -P``: the driver's folder (``bench/``, whose ``http.py`` would shadow the standard
    library's) stays off ``sys.path``.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.hello: dict[str, Any] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    async def __aenter__(self) -> DaskPeer:
        python = await asyncio.to_thread(dask_python)
        # Kept open for the driver's life (its stderr); closed, and so deleted, in __aexit__.
        self._log = tempfile.NamedTemporaryFile(prefix="smartq-bench-dask-", suffix=".log")  # noqa: SIM115
        self._proc = await asyncio.create_subprocess_exec(
            str(python),
            "-P",
            str(DASK_DRIVER),
            "--threads",
            str(self.threads),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
        )
        self.hello = await self._read(120.0)
        return self

    async def __aexit__(self, *_: object) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.command({"op": "quit"}, answer=False)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), timeout)
        if not line:
            raise PeerError(f"the Dask driver exited:\n{self._tail()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _tail(self) -> str:
        if self._log is None:
            return ""
        return Path(self._log.name).read_text(errors="replace")[-3000:]

    async def command(
        self, command: dict[str, Any], *, answer: bool = True, timeout: float = 900.0
    ) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self._proc.stdin.drain()
        return await self._read(timeout) if answer else {}
