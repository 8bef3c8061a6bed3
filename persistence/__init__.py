"""Durable state: SQLAlchemy async models, repositories and Alembic migrations."""
