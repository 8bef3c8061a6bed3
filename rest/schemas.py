"""Request models for the REST layer (responses are built by ``persistence.views``)."""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from persistence.models import CourseSessionStatus, SessionEnrollmentStatus, SessionStatus

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
ShortText = Annotated[str, StringConstraints(max_length=200)]
Level = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Notes = Annotated[str, StringConstraints(max_length=20_000)]
Capacity = Annotated[int, Field(ge=1, le=200)]
IdleAfter = Annotated[int, Field(ge=5, le=3600)]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"expected an IANA time zone such as Europe/Paris, got {value!r}"
        ) from None
    return value


TimeZoneName = Annotated[str, StringConstraints(max_length=64), AfterValidator(_known_zone)]

MAX_SESSION_LENGTH = timedelta(hours=12)
DEFAULT_MAX_STUDENTS = 10


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_times(starts_at: AwareDatetime | None, ends_at: AwareDatetime | None) -> None:
    if starts_at is None or ends_at is None:
        return
    if ends_at <= starts_at:
        raise ValueError("ends_at must be after starts_at")
    if ends_at - starts_at > MAX_SESSION_LENGTH:
        raise ValueError(f"a session lasts at most {MAX_SESSION_LENGTH}")


class SessionCreate(Body):
    title: Title
    tutor_id: Id
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    max_students: Capacity = DEFAULT_MAX_STUDENTS
    idle_after_s: IdleAfter | None = None
    # Only a SUPER_ADMIN may name a center; everyone else creates in their own.
    center_id: Id | None = None
    # The course session this live session meets for, if any.
    course_session_id: Id | None = None

    @model_validator(mode="after")
    def _times(self) -> Self:
        _check_times(self.starts_at, self.ends_at)
        return self


class SessionUpdate(Body):
    title: Title | None = None
    tutor_id: Id | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    max_students: Capacity | None = None
    idle_after_s: IdleAfter | None = None
    # null unlinks the live session from its course session.
    course_session_id: Id | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("expected at least one field to change")
        for name in self.model_fields_set - {"idle_after_s", "course_session_id"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        _check_times(self.starts_at, self.ends_at)
        return self


class SessionListQuery(Body):
    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    day: date | None = None
    tz: TimeZoneName = "UTC"
    tutor_id: Id | None = None
    status: SessionStatus | None = None
    center_id: Id | None = None


class PageQuery(Body):
    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    limit: Annotated[int, Field(ge=1, le=100)] = 50


class EnrollmentCreate(Body):
    student_id: Id
    student_name: ShortText | None = None
    course_id: Id | None = None
    lesson_id: Id | None = None
    level: Level | None = None
    exercise_content: dict[str, Any] | None = None


class AssessmentWrite(Body):
    """An assessor's (or the tutor's) assessment of one student's work in a session:
    a JSON object, a grade among its fields if the center grades."""

    assessment_data: dict[str, Any]


class EnrollmentUpdate(Body):
    student_name: ShortText | None = None
    course_id: Id | None = None
    lesson_id: Id | None = None
    level: Level | None = None
    exercise_content: dict[str, Any] | None = None
    assessment_data: dict[str, Any] | None = None
    completed: bool | None = None
    notes: Notes | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("expected at least one field to change")
        if "completed" in self.model_fields_set and self.completed is None:
            raise ValueError("completed cannot be null")
        return self


# Course sessions (the design's names: snake_case bodies, camelCase query parameters).

SessionName = Annotated[str, StringConstraints(min_length=2, max_length=255, strip_whitespace=True)]
Description = Annotated[str, StringConstraints(max_length=20_000)]
AnnouncementTitle = Annotated[
    str, StringConstraints(min_length=2, max_length=255, strip_whitespace=True)
]
AnnouncementText = Annotated[
    str, StringConstraints(min_length=10, max_length=2000, strip_whitespace=True)
]
Percent = Annotated[int, Field(ge=0, le=100)]
CourseCapacity = Annotated[int, Field(ge=1, le=100_000)]
MAX_COHORTS = 100


def _each_once(ids: list[str] | None) -> list[str] | None:
    twice = sorted({i for i in ids if ids.count(i) > 1}) if ids else []
    if twice:
        raise ValueError(f"each cohort at most once; repeated: {', '.join(twice)}")
    return ids


# The cohorts a course session is offered to (each a live cohort of its center).
CohortIds = Annotated[list[Id], Field(max_length=MAX_COHORTS), AfterValidator(_each_once)]


class CourseSessionCreate(Body):
    session_name: SessionName
    session_description: Description | None = None
    teacher_id: Id
    course_id: Id
    course_session_status: CourseSessionStatus = CourseSessionStatus.DRAFT
    start_date: AwareDatetime
    end_date: AwareDatetime
    max_students: CourseCapacity | None = None
    enrollment_deadline: AwareDatetime | None = None
    session_timezone: TimeZoneName | None = None
    auto_expire_enabled: bool = True
    cohort_ids: CohortIds = Field(default_factory=list)

    @model_validator(mode="after")
    def _status(self) -> Self:
        if self.course_session_status is CourseSessionStatus.EXPIRED:
            raise ValueError("a course session is created as DRAFT or PUBLISHED")
        return self


_NOT_NULL = frozenset(
    {
        "session_name",
        "teacher_id",
        "course_id",
        "start_date",
        "end_date",
        "auto_expire_enabled",
        "cohort_ids",
    }
)


class CourseSessionUpdate(Body):
    session_name: SessionName | None = None
    session_description: Description | None = None
    teacher_id: Id | None = None
    course_id: Id | None = None
    start_date: AwareDatetime | None = None
    end_date: AwareDatetime | None = None
    max_students: CourseCapacity | None = None
    enrollment_deadline: AwareDatetime | None = None
    session_timezone: TimeZoneName | None = None
    auto_expire_enabled: bool | None = None
    cohort_ids: CohortIds | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("expected at least one field to change")
        for name in self.model_fields_set & _NOT_NULL:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class SortOrder(StrEnum):
    ASC = "asc"
    DESC = "desc"


class SortField(StrEnum):
    COURSE_SESSION_ID = "course_session_id"
    SESSION_NAME = "session_name"
    START_DATE = "start_date"
    END_DATE = "end_date"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"


PageNumber = Annotated[int, Field(ge=1, le=1_000_000)]
Limit = Annotated[int, Field(ge=1, le=100)]


class CourseSessionListQuery(Body):
    page: PageNumber = 1
    limit: Limit = 10
    status: CourseSessionStatus | None = None
    course_id: Id | None = Field(None, alias="courseId")
    teacher_id: Id | None = Field(None, alias="teacherId")
    start_date: AwareDatetime | None = Field(None, alias="startDate")
    end_date: AwareDatetime | None = Field(None, alias="endDate")
    sort_by: SortField = Field(SortField.CREATED_AT, alias="sortBy")
    sort_order: SortOrder = Field(SortOrder.DESC, alias="sortOrder")


class CourseEnrollmentListQuery(Body):
    page: PageNumber = 1
    limit: Limit = 20
    status: SessionEnrollmentStatus | None = None


class StudentSessionListQuery(Body):
    page: PageNumber = 1
    limit: Limit = 20
    status: SessionEnrollmentStatus | None = None
    active_only: bool = Field(False, alias="activeOnly")
    # A parent names their linked child; a student reads their own.
    student_id: Id | None = None


class AnnouncementListQuery(Body):
    page: PageNumber = 1
    limit: Limit = 20
    is_urgent: bool | None = Field(None, alias="isUrgent")
    active_only: bool = Field(False, alias="activeOnly")


class StudentAnnouncementQuery(Body):
    page: PageNumber = 1
    limit: Limit = 20
    # A parent names their linked child; a student reads their own.
    student_id: Id | None = None


class JoinByCode(Body):
    session_code: Annotated[str, StringConstraints(min_length=1, max_length=32)]


class EnrollmentStatusUpdate(Body):
    enrollment_status: SessionEnrollmentStatus


class GradeUpdate(Body):
    completion_percentage: Percent
    final_grade: Percent | None = None


def _check_window(scheduled_for: AwareDatetime | None, expires_at: AwareDatetime | None) -> None:
    if scheduled_for is not None and expires_at is not None and expires_at <= scheduled_for:
        raise ValueError("expires_at must be after scheduled_for")


class AnnouncementCreate(Body):
    title: AnnouncementTitle
    message: AnnouncementText
    is_urgent: bool = False
    scheduled_for: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _window(self) -> Self:
        _check_window(self.scheduled_for, self.expires_at)
        return self


class AnnouncementUpdate(Body):
    title: AnnouncementTitle | None = None
    message: AnnouncementText | None = None
    is_urgent: bool | None = None
    scheduled_for: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("expected at least one field to change")
        for name in self.model_fields_set & {"title", "message", "is_urgent"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class GradeBand(Body):
    min: Percent
    max: Percent

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.max < self.min:
            raise ValueError("max must not be below min")
        return self


GradeName = Annotated[str, StringConstraints(min_length=1, max_length=16)]


class SettingsUpdate(Body):
    allow_late_enrollment: bool | None = None
    require_approval_for_enrollment: bool | None = None
    allow_student_discussions: bool | None = None
    allow_student_drop: bool | None = None
    send_reminder_emails: bool | None = None
    reminder_days_before_expiry: Annotated[int, Field(ge=1, le=30)]
    grading_scale: Annotated[dict[GradeName, GradeBand], Field(max_length=50)] | None = None
    attendance_tracking_enabled: bool | None = None

    @model_validator(mode="after")
    def _flags(self) -> Self:
        for name in self.model_fields_set - {"grading_scale"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self
