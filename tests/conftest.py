"""Shared fixtures: real SQLite files (and, from postgres_fixture, a real PostgreSQL server)."""

from postgres_fixture import *  # noqa: F403
