"""The hub's base layer: what every other part builds on; it imports nothing else
of the hub's.

Errors and their codes, the JSON codec, configuration, identity (JWT), metrics,
background tasks, rate limits, the payload types every event shares, and the
log budget. Nothing here imports a feature, the gateway, the bus or the
assembly; the layers contract in ``pyproject.toml`` checks it (``make lint``).
"""
