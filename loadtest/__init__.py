"""Load-test harness that simulates whole tutoring sessions (issue 6; not built yet)."""
