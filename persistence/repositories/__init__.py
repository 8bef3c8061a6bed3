"""Repositories: the queries the hub runs, one module per aggregate.

Each takes an ``AsyncSession`` owned by the caller, so a change and its audit
entry commit in one transaction. None of them checks permissions; callers do.
"""

from persistence.repositories.attendance import (
    AttendanceRecords,
    AttendanceRepository,
    AttendanceTotals,
)
from persistence.repositories.audit import AuditLog
from persistence.repositories.canvas import CanvasRepository, StoredCanvas
from persistence.repositories.courses import (
    AnnouncementRepository,
    CourseEnrollmentRepository,
    CourseSessionQuery,
    CourseSessionRepository,
    effective_status,
)
from persistence.repositories.paging import Page, page_of
from persistence.repositories.people import Imported, ParentLinks, PeopleRepository, Seen
from persistence.repositories.sessions import (
    EnrollmentRepository,
    SessionQuery,
    SessionRepository,
)

__all__ = [
    "AnnouncementRepository",
    "AttendanceRecords",
    "AttendanceRepository",
    "AttendanceTotals",
    "AuditLog",
    "CanvasRepository",
    "CourseEnrollmentRepository",
    "CourseSessionQuery",
    "CourseSessionRepository",
    "EnrollmentRepository",
    "Imported",
    "Page",
    "ParentLinks",
    "PeopleRepository",
    "Seen",
    "SessionQuery",
    "SessionRepository",
    "StoredCanvas",
    "effective_status",
    "page_of",
]
