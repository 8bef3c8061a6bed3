"""The tutor hub's real-time core: Socket.IO server, app assembly, identity and CLI."""
