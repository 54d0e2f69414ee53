"""The control channel: commands from the project's own code to its workers, and replies.

A request is a row in the project's database (the one every worker already writes its
heartbeat to, whatever the broker), signed with HMAC-SHA256 under a key derived from
``SECRET_KEY``; each worker's supervisor reads the requests made since it started (woken
by ``NOTIFY`` on PostgreSQL, looking about once a second elsewhere), answers those meant
for it with a signed reply row, and drops (and logs) any whose signature does not check.
Nothing listens on a network port. ``channel.py`` sends and gathers, ``server.py`` answers.
"""
