"""Session rooms: who may join what, room names, and which sockets are in which session."""
