"""A user's own job module, as `smartq worker --import tests.e2e.userjobs` would load it."""

import smartq


@smartq.job("greet", timeout=5, cpu_units=1)
async def greet(ctx):  # type: ignore[no-untyped-def]
    ctx.log.info("hello %s", ctx.payload.get("name", "world"))
    return {"greeting": f"hello {ctx.payload.get('name', 'world')}"}
