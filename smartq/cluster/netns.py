"""Network namespaces and veth pairs with ``ip`` (needs root): a host is a namespace with its
own loopback and one veth pair to the root namespace; a partition takes the pair's root end
down."""

from __future__ import annotations

import subprocess

from smartq.cluster.layout import Host


class NetnsError(RuntimeError):
    """An ``ip`` command failed."""


def ip(*args: str, namespace: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def exists(host: Host) -> bool:
    return host.namespace in namespaces()


def namespaces() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}


def add(host: Host) -> None:
    """The host's namespace, loopback up, and its veth pair with a /30 on each end."""
    ns = host.namespace
    ip("netns", "add", ns)
    ip("link", "set", "lo", "up", namespace=ns)
    ip("link", "add", host.veth, "type", "veth", "peer", "name", host.inner_veth, "netns", ns)
    ip("addr", "add", f"{host.peer}/30", "dev", host.veth)
    ip("addr", "add", f"{host.address}/30", "dev", host.inner_veth, namespace=ns)
    ip("link", "set", host.inner_veth, "up", namespace=ns)
    ip("link", "set", host.veth, "up")


def remove(host: Host) -> None:
    """The namespace and the pair (deleting either end deletes both); quiet if already gone."""
    ip("link", "del", host.veth, check=False)
    ip("netns", "del", host.namespace, check=False)


def set_link(host: Host, up: bool) -> None:
    """Partition (``up`` False) or heal the host: packets are dropped, connections stay open
    on both sides until their own timeouts."""
    ip("link", "set", host.veth, "up" if up else "down")


def link_up(host: Host) -> bool | None:
    """Whether the host's link is up (None: no such link)."""
    out = ip("-br", "link", "show", host.veth, check=False)
    if not out:
        return None
    fields = out.split()
    return len(fields) > 1 and fields[1] == "UP"


def exec_prefix(host: Host) -> list[str]:
    """What runs a command inside the host (``ip netns exec`` execs it: same pid)."""
    return ["ip", "netns", "exec", host.namespace]
