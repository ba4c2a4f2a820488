"""Fuzzing the real ``smartq api`` (issue 5, scenario 11): every operation of its OpenAPI
spec with schemathesis, and random DAG batches with hypothesis. Never a 5xx; a rejected
request writes nothing; an operation that declares a key refuses a request without one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth

from tests.apikeys import bearer
from tests.databases import PostgresDatabases
from tests.faults.cluster import Cluster, cluster

#: Examples per operation: 12 operations × 50 take 15-40 s on two busy cores.
EXAMPLES_PER_OPERATION = 50
BATCHES = 200


@pytest.fixture
def api(postgres_databases: PostgresDatabases, tmp_path: Any) -> Iterator[Cluster]:
    """The API process alone (what it writes is all these tests look at)."""
    with cluster(postgres_databases, tmp_path) as c:
        c.start_api()
        yield c


def _written(c: Cluster) -> tuple[int, int, int]:
    """Jobs, batches and edges in the database."""
    row = c.rows(
        "SELECT (SELECT count(*) FROM jobs) AS j, (SELECT count(*) FROM batches) AS b, "
        "(SELECT count(*) FROM job_dependencies) AS e"
    )[0]
    return int(row["j"]), int(row["b"]), int(row["e"])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_schemathesis_finds_no_server_error(api: Cluster) -> None:
    """Every operation, valid and invalid inputs alike: never a 5xx, and a request answered
    with an error wrote nothing. Sent with an admin key, so the key administration routes are
    fuzzed past their 403 too; schemathesis also sends what succeeded again without the key
    and with a wrong one, which must be refused."""
    schema = schemathesis.openapi.from_url(f"{api.base}/openapi.json")
    admin = bearer(api.create_key(admin=True))
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def call(case: schemathesis.Case) -> None:
            try:
                before = _written(api)
                response = case.call(base_url=api.base, headers=admin, timeout=30)
                case.validate_response(response, checks=[not_a_server_error, ignored_auth])
                if response.status_code >= 400:
                    assert _written(api) == before, f"{response.status_code} but wrote"
            except Exception as exc:  # every operation's first failure, not just one
                failures.append(f"{case.method} {case.formatted_path}: {exc}")
                raise

        with contextlib.suppress(Exception):  # recorded in failures
            call()
    print(f"\n{operations} operations × up to {EXAMPLES_PER_OPERATION} examples")
    assert operations >= 8
    assert not failures, "\n".join(failures[:10])
    assert not api.log_problems()


KEYS = ["a", "b", "c", "d", "e", "f"]


@st.composite
def batches(draw: st.DrawFn, existing: str) -> list[dict[str, Any]]:
    """Up to 6 jobs with keys from a small set (so duplicates happen) whose dependencies
    name keys of the batch (cycles, self-loops), keys nobody has, an existing job, or a
    random (unknown) id."""
    n = draw(st.integers(1, 6))
    if draw(st.booleans()):  # mostly valid: unique keys, edges to earlier jobs only
        keys = draw(st.lists(st.sampled_from(KEYS), min_size=n, max_size=n, unique=True))
        deps = [st.sampled_from([*keys[:i], existing]) for i in range(n)]
    else:  # anything: duplicate keys, self-loops, cycles, unknown keys and ids
        keys = draw(st.lists(st.sampled_from(KEYS), min_size=n, max_size=n))
        anything = st.one_of(
            st.sampled_from(KEYS), st.just(existing), st.uuids().map(str), st.just("zz")
        )
        deps = [anything] * n
    return [
        {"key": k, "type": "noop", "depends_on": draw(st.lists(d, max_size=3))}
        for k, d in zip(keys, deps, strict=True)
    ]


def _valid(jobs: list[dict[str, Any]], existing: str) -> bool:
    """The oracle: unique keys, every dependency known, no self-loop, no cycle."""
    keys = [j["key"] for j in jobs]
    if len(set(keys)) != len(keys):
        return False
    graph: dict[str, set[str]] = {}
    for j in jobs:
        deps = set(j["depends_on"])
        if j["key"] in deps or not deps <= set(keys) | {existing}:
            return False
        graph[j["key"]] = deps - {existing}
    done: set[str] = set()

    def acyclic(node: str, path: frozenset[str]) -> bool:
        if node in path:
            return False
        if node in done:
            return True
        ok = all(acyclic(d, path | {node}) for d in graph[node])
        done.add(node)
        return ok

    return all(acyclic(k, frozenset()) for k in graph)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_random_dag_batches_are_all_or_nothing(api: Cluster) -> None:
    """Random batches with duplicate keys, self-loops, cycles and unknown dependencies: a
    valid one is 201 with every job and edge written; any other is 4xx (422) and writes
    nothing. Never a 5xx."""
    with api.client(timeout=30) as client:
        created = client.post("/jobs", json={"type": "noop"})
        assert created.status_code == 201, created.text
        existing = created.json()["id"]
        seen: dict[int, int] = {}

        @settings(
            max_examples=BATCHES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(jobs=batches(existing))
        def submit(jobs: list[dict[str, Any]]) -> None:
            before = _written(api)
            r = client.post("/jobs/batch", json={"jobs": jobs})
            after = _written(api)
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code < 500, r.text
            if _valid(jobs, existing):
                assert r.status_code == 201, (jobs, r.text)
                edges = sum(len(set(j["depends_on"])) for j in jobs)
                assert after == (before[0] + len(jobs), before[1] + 1, before[2] + edges)
            else:
                assert r.status_code == 422, (jobs, r.text)
                assert after == before, "a rejected batch wrote something"

        submit()
        print(f"\nstatus codes {seen}")
        assert seen.get(201) and seen.get(422), seen
    assert not api.log_problems()
