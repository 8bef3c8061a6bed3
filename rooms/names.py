"""Room names. Every room is scoped by center and session.

- staff room: the tutor and observers of a session (they see every student);
- student room: every connection of one student in one session (only theirs);
- students room: every student of a session, for session-wide notices only
  (timers, the session ending), never for one student's data.
"""

from __future__ import annotations


def staff_room(center_id: str, session_id: str) -> str:
    return f"c:{center_id}:s:{session_id}:staff"


def student_room(center_id: str, session_id: str, student_id: str) -> str:
    return f"c:{center_id}:s:{session_id}:u:{student_id}"


def students_room(center_id: str, session_id: str) -> str:
    return f"c:{center_id}:s:{session_id}:students"
