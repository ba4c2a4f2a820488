"""The web dashboard: an app shell and static files served at ``/ui`` by the API itself.

It reads only the public REST API and ``WS /jobs/stream`` (same origin, no CORS), so whatever
it can do, a script can do. Its JavaScript is plain ES modules with no build step; the one
library it needs (a graph layout) is vendored under ``static/vendor`` with its version and
hash in ``static/vendor/manifest.json`` (``scripts/vendor-ui`` refreshes it).
"""

from api.ui.router import install

__all__ = ["install"]
