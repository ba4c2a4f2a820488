"""Alembic migrations; :mod:`smartq.migrate` runs them programmatically."""
