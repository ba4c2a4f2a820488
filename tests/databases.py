"""Per-test databases: migrate a template once, copy it for each test (as procrastinate does).

PostgreSQL: ``CREATE DATABASE … TEMPLATE``; SQLite: a file copy. No test shares a database.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from smartq import migrate
from tests.services import require_postgres

TEMPLATE = f"smartq_template_{os.getpid()}"


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    u = make_url(url)
    return psycopg.connect(
        host=u.host,
        port=u.port or 5432,
        user=u.username,
        password=u.password,
        dbname=u.database or "postgres",
        autocommit=True,
    )


def _with_db(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


class PostgresDatabases:
    def __init__(self) -> None:
        self.base = require_postgres()
        self.ready = False

    def _template(self) -> None:
        if self.ready:
            return
        with _admin(self.base) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
            conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
        migrate.upgrade(_with_db(self.base, TEMPLATE))
        self.ready = True

    def create(self) -> str:
        self._template()
        name = f"smartq_t_{uuid.uuid4().hex[:12]}"
        with _admin(self.base) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        return _with_db(self.base, name)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with _admin(self.base) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        if self.ready:
            with _admin(self.base) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')


class SqliteDatabases:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.template: Path | None = None

    def create(self) -> str:
        if self.template is None:
            self.template = self.root / "template.sqlite3"
            migrate.upgrade(f"sqlite:///{self.template}")
        path = self.root / f"t_{uuid.uuid4().hex[:12]}.sqlite3"
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

    def drop(self, url: str) -> None:
        database = make_url(url).database
        if database:
            for suffix in ("", "-wal", "-shm"):
                Path(database + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        pass
