"""Course sessions (the design of issue 16): teacher, student and admin routes.

A course session is a teacher's course over weeks; students join it by its
code. Everything here answers in the design's field names. Its validation
errors are ``400 VALIDATION_ERROR`` and its business refusals ``422`` (as the
design says), unlike the live-session routes; see docs/protocol.md, "Course
sessions".

One module per part of the design: ``teacher`` (the course sessions
themselves), ``enrollments``, ``announcements``, ``settings``, ``student``
(joining by code, dropping), ``admin`` (listing and analytics) and ``live``
(live sessions meeting for a course session); ``common`` holds the refusals
and lookups they share.
"""

from __future__ import annotations

from aiohttp.web import RouteDef

from rest.courses import admin, announcements, enrollments, live, settings, student, teacher

routes: list[RouteDef] = [
    *teacher.routes,
    *enrollments.routes,
    *announcements.routes,
    *settings.routes,
    *student.routes,
    *admin.routes,
    *live.routes,
]
