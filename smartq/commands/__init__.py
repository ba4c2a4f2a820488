"""The user commands of ``smartq``, on the SDK: submit, watch and inspect jobs and batches
over the API (``--url`` / ``SMARTQ_URL``, ``--api-key`` / ``SMARTQ_API_KEY``). One module per
concept; :mod:`~smartq.commands.output` prints for all of them (``-o json``, plain text off a
terminal) and :mod:`~smartq.commands.session` maps errors to exit codes.

Each module imports the SDK (httpx, websockets) only when its command runs, so the process
commands (``smartq worker`` ...) do not pay for it.
"""
