"""Room names. Every room is scoped by center and session.

- staff room: the tutor and observers of a session (they see every student);
- student room: every connection of one student in one session (only theirs);
- students room: every student of a session, for session-wide notices only
  (timers, the session ending), never for one student's data.

Ids may hold any character, so a room name spells the lengths of its center
and session ids: ``scope_of`` reads a room's session back without ambiguity
(the Redis fan-out routes each event to its session's channel by it).
"""

from __future__ import annotations


def session_scope(center_id: str, session_id: str) -> str:
    """A name for one session of one center that no other pair of ids shares."""
    return f"{len(center_id)}:{center_id}:{len(session_id)}:{session_id}"


def staff_room(center_id: str, session_id: str) -> str:
    return f"{session_scope(center_id, session_id)}:staff"


def student_room(center_id: str, session_id: str, student_id: str) -> str:
    return f"{session_scope(center_id, session_id)}:u:{student_id}"


def students_room(center_id: str, session_id: str) -> str:
    return f"{session_scope(center_id, session_id)}:students"


def scope_of(room: str) -> str | None:
    """The session scope of one of the rooms above, or None for any other room
    (python-socketio's room of one socket, named by its sid)."""
    end = 0
    for _ in range(2):  # center id, then session id: "<length>:<id>:"
        length, colon, _ = room[end:].partition(":")
        if not colon or not length.isdigit():
            return None
        end += len(length) + 1 + int(length)
        if room[end : end + 1] != ":":
            return None
        end += 1
    return room[: end - 1]
