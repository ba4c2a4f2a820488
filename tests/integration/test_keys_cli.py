"""``smartq keys`` run as a user would (its own process, on the database of
``SMARTQ_DATABASE_URL``), against an API on the same database, on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from smartq.settings import Settings
from tests.apikeys import bearer, secret_of

ROOT = Path(__file__).resolve().parents[2]
#: The API trusts a verified key this long; a revoked key must fail within it.
CACHE_SECONDS = 1.0


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, broker_url=None, auth_cache_seconds=CACHE_SECONDS)


async def smartq(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTQ_")}
    env["SMARTQ_DATABASE_URL"] = database_url
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "smartq.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def refused_within(anonymous: httpx.AsyncClient, key: str, seconds: float) -> None:
    since = time.monotonic()
    while (await anonymous.get("/admin/keys", headers=bearer(key))).status_code != 401:
        assert time.monotonic() - since < seconds, "revoked key still accepted"
        await asyncio.sleep(0.05)


async def test_create_list_authenticate_revoke(
    anonymous: httpx.AsyncClient, database_url: str
) -> None:
    made = await smartq(database_url, "keys", "create", "--tenant", "ops", "--admin", "-o", "json")
    assert made.returncode == 0, made.stderr
    admin = json.loads(made.stdout)
    assert admin["key"].startswith(f"sq_{admin['id']}_") and admin["admin"] is True
    plain = await smartq(
        database_url, "keys", "create", "--tenant", "acme", "--scope", "read", "--label", "ci"
    )
    assert plain.returncode == 0, plain.stderr
    reader_key = plain.stdout.strip()
    assert plain.stdout == reader_key + "\n" and reader_key.startswith("sq_")  # one plain line

    r = await anonymous.get("/admin/keys", headers=bearer(admin["key"]))
    assert r.status_code == 200, r.text
    assert (await anonymous.get("/admin/keys", headers=bearer(reader_key))).status_code == 403

    listed = await smartq(database_url, "keys", "ls")
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split()[:3] == ["ID", "TENANT", "SCOPES"] and len(lines) == 2
    assert lines[0].startswith(admin["id"]) and " ci " in lines[1]
    as_json = await smartq(database_url, "keys", "ls", "-o", "json")
    rows = json.loads(as_json.stdout)
    assert [(k["tenant"], k["scopes"], k["label"]) for k in rows] == [
        ("ops", ["cancel", "read", "submit"], None),
        ("acme", ["read"], "ci"),
    ]
    assert rows[0]["last_used_at"] is not None and "key" not in rows[0]
    for key in (admin["key"], reader_key):
        secret = secret_of(key)
        assert secret not in listed.stdout and secret not in as_json.stdout

    revoked = await smartq(database_url, "keys", "revoke", admin["id"])
    assert revoked.returncode == 0 and revoked.stdout.startswith(f"revoked {admin['id']}")
    await refused_within(anonymous, admin["key"], CACHE_SECONDS + 1.0)
    again = await smartq(database_url, "keys", "revoke", admin["id"], "-o", "json")
    assert again.returncode == 0 and json.loads(again.stdout)["revoked_at"] is not None


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["keys", "revoke", "0123456789ab"], 1, "no API key"),
        (["keys", "create", "--tenant", "acme", "--scope", "write"], 2, "unknown scope"),
        (["keys", "create", "--tenant", "acme", "--expires", "soon"], 2, "duration"),
        (["keys", "create", "--tenant", "a b"], 2, "invalid tenant"),
        (["keys", "create"], 2, "--tenant"),
        (["keys", "ls", "-o", "yaml"], 2, "yaml"),
    ],
)
async def test_exit_codes_a_script_can_trust(
    tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    url = f"sqlite:///{tmp_path / 'keys.sqlite3'}"
    done = await smartq(url, *args)
    assert done.returncode == code, done.stderr
    assert says in done.stderr and done.stdout == ""
