"""The hub's frame, in layers: ``base`` (errors, codec, config, identity, metrics),
``internals`` (the fence around library internals), ``bus`` (between hubs) and
``gateway`` (connections and dispatch) below the features; ``app`` and ``cli``, the
assembly, above everything (docs/architecture.md, "Layers")."""
