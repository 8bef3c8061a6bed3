"""Request models for the REST layer (responses are built by ``persistence.views``)."""

from __future__ import annotations

from datetime import date, timedelta
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

from persistence.models import SessionStatus

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

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("expected at least one field to change")
        for name in self.model_fields_set - {"idle_after_s"}:
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
