"""Student canvases: sequenced JSON Patch streams with recovery, snapshots and relay.

``document`` holds the rules, ``store`` the interface (``store_database`` its
backend), ``relay`` the coalesced fan-out, ``service`` the socket events and
``svg`` the review rendering. See docs/architecture.md.
"""
