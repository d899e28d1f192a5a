"""The application factory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_migrate import Migrate

from . import config as journal_config
from .db import db

migrate = Migrate()
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_path=journal_config.instance_path())
    app.config.from_mapping(journal_config.defaults(app.instance_path))
    app.config.from_prefixed_env("JOURNAL")
    if test_config:
        app.config.from_mapping(test_config)
    journal_config.check_secrets(app.config)

    # Import every model module so that the metadata (and Alembic) see all tables.
    import auth.models  # noqa: F401

    from . import models  # noqa: F401

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))

    from . import cli

    cli.register(app)
    return app
