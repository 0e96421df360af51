"""SQLAlchemy 2 async storage, the same code on PostgreSQL (asyncpg) and SQLite (aiosqlite)."""
