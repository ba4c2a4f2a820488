"""``python -m smartq.cluster up|down|status|faults|proxy`` (``scripts/cluster`` runs it)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from smartq import logs
from smartq.cluster import scenarios
from smartq.cluster.cluster import ROOT, Cluster, ClusterError
from smartq.cluster.control import serve
from smartq.cluster.layout import Spec
from smartq.cluster.proxy import Address

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
StateDir = Annotated[
    Path, typer.Option("--state-dir", help="Where up keeps pids, ports, the key and logs.")
]
Output = Annotated[str, typer.Option("--output", "-o", help="text or json")]
DEFAULT_STATE = ROOT / ".cluster"


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@app.command()
def up(
    state_dir: StateDir = DEFAULT_STATE,
    workers: Annotated[int, typer.Option(min=1, max=50)] = 4,
    imports: Annotated[str, typer.Option(help="SMARTQ_IMPORTS of every process.")] = "",
) -> None:
    """Namespaces, veths, the proxy, 2 APIs, 2 schedulers, a logger and the workers."""
    env = (("SMARTQ_IMPORTS", imports),) if imports else ()
    c = Cluster(Spec(workers=workers, env=env), state_dir)
    try:
        took = c.up()
    except (ClusterError, OSError) as exc:
        _fail(f"{exc} (logs in {c.logdir}; `scripts/cluster down` cleans up)")
    typer.echo(
        f"up in {took:.1f}s; leader {c.leader()}; APIs " + " ".join(c.api_base(n) for n in c.apis())
    )
    typer.echo(f'key in {state_dir / "state.json"} ("key")')


@app.command()
def down(
    state_dir: StateDir = DEFAULT_STATE,
    drop_database: Annotated[bool, typer.Option(help="Drop the cluster's database too.")] = False,
) -> None:
    """Stop every process; delete the namespaces and veths (and the database if asked)."""
    try:
        c = Cluster.attach(state_dir)
    except ClusterError:
        c = Cluster(Spec(), state_dir)  # nothing recorded: still remove leftovers
    killed = c.down(drop_database=drop_database)
    typer.echo("down" + (f" (killed: {', '.join(killed)})" if killed else ""))


@app.command()
def status(state_dir: StateDir = DEFAULT_STATE, output: Output = "text") -> None:
    """Hosts, processes alive, paths and their toxics."""
    try:
        doc = Cluster.attach(state_dir).status()
    except ClusterError as exc:
        _fail(str(exc))
    if output == "json":
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"leader: {doc['leader']}  database: {doc['database']}  up in {doc['up_seconds']}s")
    typer.echo(f"proxy control {doc['proxy']['control']} alive={doc['proxy']['alive']}")
    for h in doc["hosts"]:
        typer.echo(
            f"  {h['host']:8} {h['role']:9} {h['address']:14} "
            f"link={'up' if h['link_up'] else 'DOWN'} pid={h['pid']} "
            f"{'alive' if h['alive'] else 'DEAD'}"
        )
    for p in doc["paths"]:
        toxics = {k: v for k, v in p["toxics"].items() if v}
        typer.echo(
            f"  {p['name']:14} {p['listen']:20} -> {p['upstream']:18} "
            f"conns={p['connections']} resets={p['resets']} toxics={toxics or '-'}"
        )


@app.command()
def toxic(
    path: str,
    changes: Annotated[list[str], typer.Argument(help="name=value, e.g. latency_ms=200")],
    state_dir: StateDir = DEFAULT_STATE,
) -> None:
    """Change toxics of a path by hand (`clear` as the only change clears them)."""
    proxy = Cluster.attach(state_dir).proxy
    if changes == ["clear"]:
        proxy.clear(None if path == "all" else path)
        return
    values = {k: json.loads(v) for k, v in (c.split("=", 1) for c in changes)}
    typer.echo(json.dumps(proxy.set(path, **values)["toxics"]))


@app.command()
def faults(
    names: Annotated[list[str] | None, typer.Argument(help="Scenarios (default: all).")] = None,
    list_only: Annotated[bool, typer.Option("--list", help="Only list them.")] = False,
) -> None:
    """Run the fault scenarios (each on a cluster of its own) and the checker."""
    if list_only:
        for s in scenarios.SCENARIOS:
            typer.echo(f"{s.name:18} {s.checks}")
        return
    try:
        code = scenarios.run(names or [])
    except KeyError as exc:
        _fail(str(exc))
    raise typer.Exit(code)


@app.command()
def proxy(
    paths: Annotated[Path, typer.Option(help="JSON list of {name, listen, upstream}.")],
    control: Annotated[str, typer.Option(help="host:port of the control interface.")],
) -> None:
    """The fault proxy itself (``up`` starts it)."""
    logs.configure("INFO", "json")
    asyncio.run(serve(paths, Address.parse(control)))


if __name__ == "__main__":
    app()
