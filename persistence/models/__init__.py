"""SQLAlchemy models. Every row carries its center; every foreign key is indexed.

A foreign key is covered by a composite index or unique constraint that leads
with it (``session_id, student_id``) rather than by an index of its own. One
module per area; importing this package registers every table on ``Base.metadata``.
"""

from persistence.models.audit import (
    AuditEntry,
)
from persistence.models.base import (
    EXTERNAL_ID_LENGTH,
    ID_LENGTH,
    NAMING_CONVENTION,
    Base,
    JSONDocument,
    UTCDateTime,
    new_id,
    utcnow,
)
from persistence.models.canvas import (
    CanvasOp,
    CanvasSnapshot,
)
from persistence.models.cohorts import (
    Cohort,
    CohortMember,
)
from persistence.models.courses import (
    SEATED,
    CourseSession,
    CourseSessionAnnouncement,
    CourseSessionCohort,
    CourseSessionEnrollment,
    CourseSessionSettings,
    CourseSessionStatus,
    SessionEnrollmentStatus,
)
from persistence.models.live import (
    HELP_ACTIVE,
    Alert,
    AttendanceInterval,
    AttendanceRecord,
    AttendanceStatus,
    CatchUpPackage,
    Enrollment,
    EnrollmentEvent,
    EnrollmentEventKind,
    ExerciseAttempt,
    HelpPriority,
    HelpRequest,
    HelpStatus,
    LiveSession,
    Mode,
    NoteVisibility,
    SessionStatus,
    Timer,
    TutorNote,
)
from persistence.models.people import (
    EMAIL_LENGTH,
    ParentLink,
    Person,
    PersonSource,
)
from persistence.models.relationships import (
    SUBJECT_LENGTH,
    TutorStudent,
    TutorSubject,
)

__all__ = [
    "EMAIL_LENGTH",
    "EXTERNAL_ID_LENGTH",
    "HELP_ACTIVE",
    "ID_LENGTH",
    "NAMING_CONVENTION",
    "SEATED",
    "SUBJECT_LENGTH",
    "Alert",
    "AttendanceInterval",
    "AttendanceRecord",
    "AttendanceStatus",
    "AuditEntry",
    "Base",
    "CanvasOp",
    "CanvasSnapshot",
    "CatchUpPackage",
    "Cohort",
    "CohortMember",
    "CourseSession",
    "CourseSessionAnnouncement",
    "CourseSessionCohort",
    "CourseSessionEnrollment",
    "CourseSessionSettings",
    "CourseSessionStatus",
    "Enrollment",
    "EnrollmentEvent",
    "EnrollmentEventKind",
    "ExerciseAttempt",
    "HelpPriority",
    "HelpRequest",
    "HelpStatus",
    "JSONDocument",
    "LiveSession",
    "Mode",
    "NoteVisibility",
    "ParentLink",
    "Person",
    "PersonSource",
    "SessionEnrollmentStatus",
    "SessionStatus",
    "Timer",
    "TutorNote",
    "TutorStudent",
    "TutorSubject",
    "UTCDateTime",
    "new_id",
    "utcnow",
]
