"""The gateway: connections, dispatch of client events, sending to rooms."""
