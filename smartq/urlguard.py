"""Which callback URLs smartq calls (SSRF guard). Pure: the API checks a URL as written
(:func:`check_url`), the deliverer checks again what its host resolves to right before it
connects (:func:`pick_address`), and connects to the address it checked, so a DNS answer that
changes in between (rebinding) cannot reach an address the first check would have refused.

Refused: schemes other than http and https, credentials in the URL, ``localhost`` and names
under ``.localhost``, and addresses that are loopback, private, link-local, unspecified,
multicast, reserved or otherwise not globally routable — IPv4 and IPv6 alike, an IPv4 address
mapped into IPv6 judged as the IPv4 address. An operator allows some anyway with
``SMARTQ_CALLBACK_ALLOWED_HOSTS``: host names (allowed whatever they resolve to) and
addresses or CIDRs (allowed wherever they come from).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from smartq.errors import CallbackRefused, ConfigurationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = ("http", "https")


@dataclass(frozen=True, slots=True)
class Allowance:
    """What an operator allows beyond the public internet."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    def allows_host(self, host: str) -> bool:
        return _normal(host) in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        plain = _unmapped(address)
        return any(plain in net or address in net for net in self.networks)


NOTHING = Allowance()


def parse_allowance(entries: Iterable[str]) -> Allowance:
    """``SMARTQ_CALLBACK_ALLOWED_HOSTS`` split at commas: a CIDR or an address is a network,
    anything else a host name."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        if "/" in entry or not all(c.isalnum() or c in "-._" for c in entry):
            raise ConfigurationError(
                f"callback allowance {entry!r} is neither a host name nor an address or CIDR"
            )
        hosts.add(_normal(entry))
    return Allowance(frozenset(hosts), tuple(networks))


def _normal(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def blocked_reason(address: IPAddress) -> str | None:
    """Why smartq does not call ``address`` by default (None: a public address)."""
    plain = _unmapped(address)
    checks = (
        ("loopback", plain.is_loopback),
        ("link-local", plain.is_link_local),
        ("unspecified", plain.is_unspecified),
        ("multicast", plain.is_multicast),
        ("private", plain.is_private),
        ("reserved", plain.is_reserved),
        ("not globally routable", not plain.is_global),
    )
    return next((why for why, hit in checks if hit), None)


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL's parts: where to connect, and what to ask for there."""

    scheme: str
    host: str
    port: int
    #: The path and query, as the request line names them.
    target: str
    #: The host as an address when the URL names one (no resolution needed).
    address: IPAddress | None


def _address(host: str) -> IPAddress | None:
    """The host as an address (an IPv6 zone, ``%eth0``, left off), or None for a name. The
    shorthand IPv4 forms the C resolver also reads as addresses (``2130706433``, ``127.1``,
    ``0x7f.0.0.1``) are addresses too: a guard that took them for names let them through."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host.lower()) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_url(url: str, allowance: Allowance = NOTHING) -> Target:
    """A URL as written, checked without resolving it; :class:`CallbackRefused` says why not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused(f"not a URL smartq can call: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise CallbackRefused(f"scheme {parts.scheme or '(none)'!r}: only http and https")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("credentials in the URL: the signature authenticates smartq")
    host = _normal(parts.hostname or "")
    if not host:
        raise CallbackRefused("no host in the URL")
    address = _address(host)
    if not allowance.allows_host(host):
        if address is not None:
            why = blocked_reason(address)
            if why is not None and not allowance.allows_address(address):
                raise CallbackRefused(f"address {address} is {why}")
        elif host == "localhost" or host.endswith(".localhost"):
            raise CallbackRefused(f"host {host!r} is loopback")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if scheme == "https" else 80
    return Target(scheme, host, port or default, target, address)


def pick_address(host: str, resolved: Sequence[str], allowance: Allowance = NOTHING) -> str:
    """The address to connect to for ``host``, which resolved to ``resolved``: refused when
    any of them is blocked and not allowed (a name that can point inside, may)."""
    if not resolved:
        raise CallbackRefused(f"host {host!r} resolved to no address")
    if allowance.allows_host(host):
        return resolved[0]
    for text in resolved:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        why = blocked_reason(address)
        if why is not None and not allowance.allows_address(address):
            raise CallbackRefused(f"host {host!r} resolves to {address}, which is {why}")
    return resolved[0]
