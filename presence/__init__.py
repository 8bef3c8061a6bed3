"""Whether each student of a session is online, counting all their connections as one."""
