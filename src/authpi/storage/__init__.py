"""Storage layer: SQLAlchemy 2 async tables, the engine and Alembic migrations."""
