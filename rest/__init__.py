"""The REST layer under /api/v1: routes, request models, the error body and list envelope."""
