"""The bus between hubs: several hub processes sharing live sessions.

Every message between hubs goes on the channel of one session, and a hub
subscribes to a session's channel only while it has members of that session
(python-socketio's stock Redis manager puts every emit of the cluster on one
channel that every hub reads and decodes: each hub then pays for all the
cluster's traffic). A hub with no member of a session never hears of it.

A message is framed as ``<node id> NUL <kind> <sent at> <payload>``: a hub
drops its own echoes and routes the others by kind without decoding the
payload. Pub/sub is not durable: what a hub misses while its subscription is
down is lost, which the hooks registered with ``on_reconnect`` repair (the
canvas stream positions tell clients to resync).

``bus.py`` holds the interface (``Bus``) and the frame format;
``bus_memory.Cluster`` is the single-process default (nothing to share);
``bus_redis.RedisCluster`` is used when ``HUB_REDIS_URL`` is set.
"""
