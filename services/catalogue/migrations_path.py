"""Where the catalogue's SQL migrations live (shared by the app, the demo loader and the bench)."""

from pathlib import Path

MIGRATIONS = Path(__file__).with_name("migrations")
