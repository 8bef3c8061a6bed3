"""Student canvases: JSON Patch streams in seq order, with recovery, snapshots and relay.

``document`` holds the rules, ``store`` the interface (``store_sequenced`` the
store, built from its parts by ``build``), ``relay`` the coalesced fan-out,
``service`` the socket events and ``svg`` the review rendering. See
docs/architecture.md.
"""
