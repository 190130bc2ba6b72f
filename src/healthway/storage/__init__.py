"""SQLAlchemy 2 models and queries only."""
