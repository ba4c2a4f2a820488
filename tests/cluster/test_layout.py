"""The cluster's shape (pure): addresses, paths, settings and the state file's round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartq.cluster.cluster import State
from smartq.cluster.layout import Role, Spec
from smartq.cluster.scenarios import selector


def test_hosts_get_their_own_30_and_roles() -> None:
    spec = Spec(workers=5)
    hosts = spec.hosts()
    assert [h.name for h in hosts] == [
        "api1", "api2", "sched1", "sched2", "logger", "w1", "w2", "w3", "w4", "w5",
    ]  # fmt: skip
    assert [(h.peer, h.address) for h in hosts[:2]] == [
        ("10.213.0.1", "10.213.0.2"),
        ("10.213.0.5", "10.213.0.6"),
    ]
    assert len({h.address for h in hosts} | {h.peer for h in hosts}) == 2 * len(hosts)
    assert all(len(h.veth) <= 15 for h in hosts)  # Linux interface names
    assert spec.host("w5").role is Role.WORKER


def test_each_host_has_its_own_paths_to_both_servers() -> None:
    spec = Spec(subnet=7)
    paths = {p.name: p for p in spec.paths({"api1": 41000, "api2": 41001})}
    assert str(paths["pg-sched1"].listen) == "10.213.7.9:5432"
    assert str(paths["pg-sched1"].upstream) == "127.0.0.1:5432"
    assert str(paths["amqp-w1"].upstream) == "127.0.0.1:5672"
    assert str(paths["http-api2"].listen) == "127.0.0.1:41001"
    assert str(paths["http-api2"].upstream) == "10.213.7.6:8000"
    assert len(paths) == 2 * len(spec.hosts()) + 2


def test_a_process_reaches_the_servers_through_its_own_paths() -> None:
    spec = Spec(env=(("SMARTQ_IMPORTS", "x"),), database_url_vars=("SIDE",))
    env = spec.host("w2").env()
    assert env["SMARTQ_DATABASE_URL"] == "postgresql://postgres@10.213.0.25:5432/smartq_cluster"
    assert env["SIDE"] == env["SMARTQ_DATABASE_URL"]
    assert env["SMARTQ_BROKER_URL"] == "amqp://guest:guest@10.213.0.25:5672/"
    assert env["SMARTQ_IMPORTS"] == "x"
    assert spec.host("w2").argv()[:3] == ["worker", "--worker-id", "w2"]


@pytest.mark.parametrize("bad", [{"subnet": 256}, {"prefix": "toolong"}, {"workers": 60}])
def test_specs_that_cannot_be_built_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Spec(**bad)  # type: ignore[arg-type]


def test_state_round_trips(tmp_path: Path) -> None:
    state = State(Spec(prefix="sqt", env=(("A", "1"),)), control="127.0.0.1:9", pids={"w1": 3})
    assert State.load(state.dump()) == state


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["api-db"], "test_api_cut_off_from_database"),
        (["api-db[stall]"], "(test_api_cut_off_from_database and stall)"),
        (["leader-stall", "slow-network"],
         "test_leader_pg_path_stalls or test_latency_and_resets_everywhere"),
    ],
)  # fmt: skip
def test_scenarios_select_their_tests(names: list[str], expected: str) -> None:
    assert selector(names) == expected
