#!/usr/bin/env bash
# Every route of the course-session design, as a new user tries them with curl
# against a running hub (`make run` in another terminal). Each call prints its
# method, path and status; the script stops at the first status it did not expect.
#
#   examples/course_sessions.sh                      # the hub on http://127.0.0.1:8000
#   HUB=http://127.0.0.1:8080 examples/course_sessions.sh
#
# Run it against a hub that shares its JWT secret with this checkout's `realtime
# token` (the development default, or HUB_JWT_SECRET set for both).
set -euo pipefail

HUB=${HUB:-http://127.0.0.1:8000}
PY=${PY:-.venv/bin/python}
CENTER=${CENTER:-demo-$(date +%s)}
API=$HUB/api/v1

token() { "$PY" -m realtime token --sub "$1" --role "$2" --center "$CENTER" --name "$3"; }
field() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$1"; }

TUTOR=$(token tutor-ada TUTOR "Ada Tutor")
ADMIN=$(token admin-1 CENTER_ADMIN "Center Admin")
STUDENT=$(token student-bo STUDENT "Bo Student")
STUDENT2=$(token student-cy STUDENT "Cy Student")

BODY=$(mktemp)
trap 'rm -f "$BODY"' EXIT

# call EXPECTED_STATUS TOKEN METHOD PATH [JSON]: the answer is in $BODY
call() {
  local expected=$1 tok=$2 method=$3 path=$4 data=${5:-}
  local args=(-s -o "$BODY" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $tok")
  if [[ -n $data ]]; then args+=(-H 'Content-Type: application/json' -d "$data"); fi
  local status
  status=$(curl "${args[@]}" "$API$path")
  printf '%-6s %-70s %s\n' "$method" "$path" "$status"
  if [[ $status != "$expected" ]]; then
    echo "expected $expected; the hub answered:" >&2
    cat "$BODY" >&2
    echo >&2
    exit 1
  fi
}

at() { "$PY" -c "from datetime import datetime, UTC, timedelta; print((datetime.now(UTC) + timedelta(minutes=$1)).isoformat(timespec='seconds'))"; }
tomorrow=$(at 1440)
later=$(at 43200)

# Everyone signs in once (the directory learns the tutor and the students).
call 200 "$TUTOR" GET /people/tutor-ada
call 200 "$STUDENT" GET /people/student-bo
call 200 "$STUDENT2" GET /people/student-cy

echo "--- a teacher's course session"
call 201 "$TUTOR" POST /teacher/sessions \
  "{\"session_name\":\"Fractions, spring\",\"teacher_id\":\"tutor-ada\",\"course_id\":\"math-5\",\"start_date\":\"$tomorrow\",\"end_date\":\"$later\",\"max_students\":2}"
ID=$(field '["data"]["course_session_id"]' <"$BODY")
CODE=$(field '["data"]["session_code"]' <"$BODY")
call 409 "$TUTOR" POST /teacher/sessions \
  "{\"session_name\":\"Fractions, spring\",\"teacher_id\":\"tutor-ada\",\"course_id\":\"math-5\",\"start_date\":\"$tomorrow\",\"end_date\":\"$later\"}"
call 400 "$TUTOR" POST /teacher/sessions \
  "{\"session_name\":\"Backwards\",\"teacher_id\":\"tutor-ada\",\"course_id\":\"math-5\",\"start_date\":\"$later\",\"end_date\":\"$tomorrow\"}"
call 200 "$TUTOR" GET "/teacher/sessions?page=1&limit=10&sortBy=start_date&sortOrder=desc"
call 200 "$TUTOR" GET "/teacher/sessions/$ID"
call 200 "$TUTOR" PATCH "/teacher/sessions/$ID" '{"session_description":"Adding and comparing fractions"}'
call 409 "$STUDENT" POST /student/sessions/join "{\"session_code\":\"$CODE\"}"  # a DRAFT: INVALID_SESSION_CODE
call 200 "$TUTOR" PATCH "/teacher/sessions/$ID/publish"

echo "--- settings"
call 200 "$TUTOR" GET "/teacher/sessions/$ID/settings"
call 200 "$TUTOR" PUT "/teacher/sessions/$ID/settings" '{"reminder_days_before_expiry":3,"allow_student_drop":true}'

echo "--- students join by code"
call 201 "$STUDENT" POST /student/sessions/join "{\"session_code\":\"$CODE\"}"
ENROLLMENT=$(field '["data"]["course_session_enrollment_id"]' <"$BODY")
call 409 "$STUDENT" POST /student/sessions/join "{\"session_code\":\"$CODE\"}"
call 409 "$STUDENT2" POST /student/sessions/join '{"session_code":"NOSUCHCODE"}'
call 201 "$STUDENT2" POST /student/sessions/join "{\"session_code\":\"$CODE\"}"
call 200 "$STUDENT" GET "/student/sessions?page=1&limit=10"
call 200 "$STUDENT" GET "/student/sessions/$ID"

echo "--- the teacher's roster, statuses and grades"
call 200 "$TUTOR" GET "/teacher/sessions/$ID/enrollments?status=ENROLLED"
call 200 "$TUTOR" PATCH "/teacher/sessions/$ID/enrollments/$ENROLLMENT/grade" '{"completion_percentage":85,"final_grade":91}'
call 200 "$TUTOR" PATCH "/teacher/sessions/$ID/enrollments/$ENROLLMENT/status" '{"enrollment_status":"COMPLETED"}'

echo "--- announcements"
call 201 "$TUTOR" POST "/teacher/sessions/$ID/announcements" '{"title":"Welcome","message":"Bring a ruler on Monday.","is_urgent":true}'
ANNOUNCEMENT=$(field '["data"]["course_session_announcement_id"]' <"$BODY")
call 200 "$TUTOR" GET "/teacher/sessions/$ID/announcements"
call 200 "$TUTOR" PATCH "/teacher/sessions/$ID/announcements/$ANNOUNCEMENT" '{"message":"Bring a ruler and a pencil on Monday."}'
call 200 "$STUDENT2" GET "/student/sessions/$ID/announcements"
call 204 "$TUTOR" DELETE "/teacher/sessions/$ID/announcements/$ANNOUNCEMENT"
call 404 "$TUTOR" PATCH "/teacher/sessions/$ID/announcements/$ANNOUNCEMENT" '{"title":"Gone"}'

echo "--- a live session meets for the course session"
call 201 "$TUTOR" POST /sessions \
  "{\"title\":\"Fractions, week 1\",\"tutor_id\":\"tutor-ada\",\"starts_at\":\"$(at 5)\",\"ends_at\":\"$(at 65)\",\"course_session_id\":\"$ID\"}"
LIVE=$(field '["data"]["id"]' <"$BODY")
call 201 "$TUTOR" POST "/sessions/$LIVE/enrollments/from-course"

echo "--- the center's view"
call 200 "$ADMIN" GET "/admin/sessions?status=PUBLISHED"
call 200 "$ADMIN" GET "/admin/sessions/$ID/analytics"
call 403 "$STUDENT" GET "/admin/sessions/$ID/analytics"

echo "--- dropping, deleting"
call 200 "$STUDENT2" DELETE "/student/sessions/$ID/enrollment"
call 422 "$TUTOR" DELETE "/teacher/sessions/$ID"  # published, with enrollments
call 201 "$TUTOR" POST /teacher/sessions \
  "{\"session_name\":\"Scratch\",\"teacher_id\":\"tutor-ada\",\"course_id\":\"math-5\",\"start_date\":\"$tomorrow\",\"end_date\":\"$later\"}"
SCRATCH=$(field '["data"]["course_session_id"]' <"$BODY")
call 204 "$TUTOR" DELETE "/teacher/sessions/$SCRATCH"
call 404 "$TUTOR" GET "/teacher/sessions/$SCRATCH"
echo "every call answered as expected"
