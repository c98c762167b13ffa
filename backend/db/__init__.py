"""Storage: SQLAlchemy 2.0 models and Alembic migrations (SQLite by default, PostgreSQL in
production). The chain is the source of truth for money; these tables hold what it cannot and
indexed copies of its events, always rebuildable from the chain."""
