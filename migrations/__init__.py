"""Alembic migrations, shipped inside the package (run with `tickstock db upgrade`)."""
