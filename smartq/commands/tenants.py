"""``smartq tenants ls|show|set|reset``: tenants' quotas, for admin keys. What applies to a
tenant is what an admin set, else the server's default (``SMARTQ_TENANT_*``; unset:
unlimited, weight 1).

``set`` changes only the quotas it names, as ``smartq types set`` does (it reads what is set
and writes it back with the change); ``none`` puts one back to the default, ``reset`` all.
``--callback-secret`` sets what the tenant's batch callbacks are signed with (write-only).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from smartq.commands.output import Output, OutputFormat, Printer, stamp
from smartq.commands.session import ApiKey, ExitCode, Url, fail, session

app = typer.Typer(help="Tenants' quotas (admin keys).", no_args_is_help=True)

Name = Annotated[str, typer.Argument(metavar="NAME", help="The tenant, as keys name it.")]
#: What each quota is called on the command line and in the table.
_QUOTAS = {
    "max_active_jobs": "MAX ACTIVE",
    "submit_rate": "SUBMIT RATE",
    "max_running": "MAX RUNNING",
    "weight": "WEIGHT",
}


def _option(help_text: str) -> Any:
    return typer.Option(help=help_text + " `none`: back to the default.", show_default=False)


@app.command("ls")
def ls(url: Url = None, api_key: ApiKey = None, output: Output = OutputFormat.TEXT) -> None:
    """Tenants an admin set quotas for, with their active jobs and what applies."""
    with session(url, api_key, output) as s:
        tenants = s.client.tenants()
        if s.out.json:
            s.out.emit(tenants)
            return
        rows = [
            [
                t["name"],
                str(t["active_jobs"]),
                *(_applied(t, q) for q in _QUOTAS),
                stamp(t["updated_at"]),
            ]
            for t in tenants
        ]
        s.out.table(["NAME", "ACTIVE", *_QUOTAS.values(), "UPDATED"], rows)


@app.command("show")
def show(
    name: Name, url: Url = None, api_key: ApiKey = None, output: Output = OutputFormat.TEXT
) -> None:
    """A tenant's quotas (its defaults when nobody set any) and its active jobs now."""
    with session(url, api_key, output) as s:
        _print(s.out, s.client.tenant(name))


@app.command("set")
def set_quotas(
    name: Name,
    max_active_jobs: Annotated[
        str | None, _option("Waiting + running jobs at most; a submit beyond is a 429.")
    ] = None,
    submit_rate: Annotated[
        str | None, _option("Submit requests per second (a batch is one), per API process.")
    ] = None,
    max_running: Annotated[str | None, _option("Running jobs at most.")] = None,
    weight: Annotated[str | None, _option("Share of capacity against other tenants'.")] = None,
    callback_secret: Annotated[
        str | None,
        typer.Option(
            help="What its batch callbacks are signed with ('-': read from standard input, "
            "which keeps it out of the process list); none: the server's default. Never shown.",
            show_default=False,
        ),
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Set some of a tenant's quotas; the others stay as they are."""
    given = {
        "max_active_jobs": (max_active_jobs, int),
        "submit_rate": (submit_rate, float),
        "max_running": (max_running, int),
        "weight": (weight, float),
    }
    changes = {q: _value(q, text, kind) for q, (text, kind) in given.items() if text is not None}
    if not changes and callback_secret is None:
        raise fail("nothing to set: name a quota, e.g. --max-active-jobs 1000", ExitCode.BAD_INPUT)
    with session(url, api_key, output) as s:
        tenant = s.client.tenant(name)
        if changes:
            quotas = {q: tenant[q] for q in _QUOTAS} | changes
            tenant = s.client.set_tenant(name, **quotas)
        if callback_secret is not None:
            tenant = s.client.set_callback_secret(name, _secret(callback_secret))
        _print(s.out, tenant)


def _secret(text: str) -> str | None:
    """``--callback-secret``: the value, ``-`` for standard input, ``none`` to clear."""
    if text.strip().lower() == "none":
        return None
    return sys.stdin.readline().strip() if text == "-" else text


@app.command("reset")
def reset(
    name: Name, url: Url = None, api_key: ApiKey = None, output: Output = OutputFormat.TEXT
) -> None:
    """Put every quota of a tenant back to the default."""
    with session(url, api_key, output) as s:
        _print(s.out, s.client.reset_tenant(name))


def _value(quota: str, text: str, kind: type[int] | type[float]) -> int | float | None:
    """An option's value: a number, or ``none`` (the default); exit 2 for anything else."""
    if text.strip().lower() == "none":
        return None
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        flag = "--" + quota.replace("_", "-")
        raise fail(f"{flag} takes {what} or none, not {text!r}", ExitCode.BAD_INPUT) from None


def _applied(tenant: dict[str, Any], quota: str) -> str:
    """What applies: the value, ``unlimited``, and ``(default)`` when nobody set it."""
    value = tenant["effective"][quota]
    if value is None:
        shown = "unlimited"
    elif isinstance(value, float) and value.is_integer():
        shown = str(int(value))
    else:
        shown = str(value)
    return shown if tenant[quota] is not None else f"{shown} (default)"


def _print(out: Printer, tenant: dict[str, Any]) -> None:
    if out.json:
        out.emit(tenant)
        return
    pairs = [("name", tenant["name"]), ("active jobs", str(tenant["active_jobs"]))]
    pairs += [(q.replace("_", " "), _applied(tenant, q)) for q in _QUOTAS]
    own = tenant.get("callback_secret_set")
    pairs.append(("callback secret", "set" if own else "not set (the server's default)"))
    pairs.append(("updated", stamp(tenant["updated_at"])))
    out.fields(pairs)
