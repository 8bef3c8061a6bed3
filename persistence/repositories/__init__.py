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
from persistence.repositories.cohorts import CohortMembers, Cohorts
from persistence.repositories.courses import (
    AnnouncementRepository,
    CourseEnrollmentRepository,
    CourseSessionCohorts,
    CourseSessionQuery,
    CourseSessionRepository,
    effective_status,
)
from persistence.repositories.links import (
    Existing,
    LinkChange,
    UnknownIds,
    people_in_role,
    sync_links,
    unique_in_order,
)
from persistence.repositories.paging import Page, page_of
from persistence.repositories.people import Imported, ParentLinks, PeopleRepository, Seen
from persistence.repositories.relationships import (
    RelationshipQuery,
    Relationships,
    TutorSubjects,
)
from persistence.repositories.sessions import (
    EnrollmentRepository,
    SessionQuery,
    SessionRepository,
)
from persistence.repositories.timeline import StudentHistory, StudentRows

__all__ = [
    "AnnouncementRepository",
    "AttendanceRecords",
    "AttendanceRepository",
    "AttendanceTotals",
    "AuditLog",
    "CanvasRepository",
    "CohortMembers",
    "Cohorts",
    "CourseEnrollmentRepository",
    "CourseSessionCohorts",
    "CourseSessionQuery",
    "CourseSessionRepository",
    "EnrollmentRepository",
    "Existing",
    "Imported",
    "LinkChange",
    "Page",
    "ParentLinks",
    "PeopleRepository",
    "RelationshipQuery",
    "Relationships",
    "Seen",
    "SessionQuery",
    "SessionRepository",
    "StoredCanvas",
    "StudentHistory",
    "StudentRows",
    "TutorSubjects",
    "UnknownIds",
    "effective_status",
    "page_of",
    "people_in_role",
    "sync_links",
    "unique_in_order",
]
