"""Whether an API process checks keys, decided once at start from the settings, the command
and the address it binds (pure, so every case is a unit test).

- ``SMARTQ_AUTH=on`` or unset: keys required. ``smartq api`` always starts this way unless told
  otherwise.
- ``smartq dev`` with ``SMARTQ_AUTH`` unset and bound to loopback runs open: one person on one
  machine, and the README's curl examples work without a key. It says so at start.
- ``SMARTQ_AUTH=off`` turns checks off anywhere, with a warning; bound to an address other
  hosts can reach, it refuses to start unless the operator also passes ``--insecure``.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from smartq.errors import ConfigurationError

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything, so not loopback
        return False


@dataclass(frozen=True, slots=True)
class AuthMode:
    required: bool
    #: What the process says about it at start (a warning when open).
    notice: str


def decide(setting: str | None, host: str, *, dev: bool, insecure: bool) -> AuthMode:
    """The mode for a process with ``SMARTQ_AUTH=setting`` binding ``host``; raises
    :class:`ConfigurationError` for an open API other hosts could reach without ``--insecure``."""
    loopback = is_loopback(host)
    if setting == "on":
        return AuthMode(True, "API keys required (SMARTQ_AUTH=on)")
    if setting is None and not (dev and loopback):
        return AuthMode(True, "API keys required")
    if not loopback and not insecure:
        raise ConfigurationError(
            f"refusing to serve {host} with authentication off: anyone who can reach it could "
            "do anything. Bind 127.0.0.1, or turn keys on (unset SMARTQ_AUTH), or pass "
            "--insecure if this network is trusted"
        )
    why = "SMARTQ_AUTH=off" if setting == "off" else "smartq dev on loopback"
    reach = "this machine only" if loopback else f"ANYONE who can reach {host} (--insecure)"
    return AuthMode(False, f"authentication is OFF ({why}): no API key needed, open to {reach}")
