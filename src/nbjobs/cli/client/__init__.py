"""The client of a running nbjobs server: ``login``, ``submit``, ``jobs``, ``logs``, ``cancel``, ``output``.

It speaks HTTP only (httpx) and imports nothing of the server stack, so ``nbjobs submit`` starts as fast
as ``nbjobs --help``. ``config`` holds the stored login, ``http`` the session and its one-line errors,
``sse`` the Server-Sent-Events reader, ``live`` the follower of a job's stream.
"""
