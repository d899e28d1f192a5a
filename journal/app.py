"""The application factory."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_babel import Babel
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy.exc import OperationalError
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as journal_config
from .db import db
from .ids import IdConverter

migrate = Migrate()
babel = Babel()
csrf = CSRFProtect()
LANGUAGES = ("kk", "ru", "en")
# Modules whose ``bp`` blueprint the app serves: one line each.
BLUEPRINTS = (
    "journal.views",
    "auth.views",
    "journal.sync",
    "journal.grid.views",
    "journal.year.views",
    "journal.council.views",
    "journal.setup.views",
    "journal.roster",
    "journal.portal",
    "exports.views",
    "archive.views",
    "archive.public_check",
)
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_path=journal_config.instance_path())
    # Every <int:...> in a route is bounded: a number no row can carry is 404, not a 500.
    app.url_map.converters["int"] = IdConverter
    app.config.from_mapping(journal_config.defaults(app.instance_path))
    app.config.from_prefixed_env("JOURNAL")
    if test_config:
        app.config.from_mapping(test_config)
    journal_config.check_secrets(app.config)
    app.session_interface = KeptSerializerSessionInterface()
    hops = int(app.config["PROXY_HOPS"])
    if hops > 0:  # the client's address in the access log, https in generated URLs
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )

    # Import every model module so that the metadata (and Alembic) see all tables.
    import archive.models  # noqa: F401
    import auth.models  # noqa: F401

    from . import models  # noqa: F401

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))

    csrf.init_app(app)
    babel.init_app(
        app, locale_selector=select_language, default_translation_directories="translations"
    )
    app.after_request(add_security_headers)

    for name in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(name).bp)

    from . import cli, errors, views

    app.context_processor(views.layout_context)
    errors.register(app)
    app.register_error_handler(OperationalError, views.database_unavailable)
    cli.register(app)
    return app


def select_language() -> str:
    """The user's own choice, then the session's, then the browser's, then Kazakh."""
    from auth.access import current_user

    user = current_user()
    if user is not None and user.language in LANGUAGES:
        return user.language
    chosen = session.get("language")
    if chosen in LANGUAGES:
        return str(chosen)
    return request.accept_languages.best_match(LANGUAGES) or "kk"


CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


def add_security_headers(response: Response) -> Response:
    """Each header unless the view set its own: the names present are read once (a
    ``setdefault`` per header scanned all of them each time, on every response)."""
    present = {name.lower() for name, _value in response.headers}
    headers = [(name, value) for name, value in SECURITY_HEADERS if name.lower() not in present]
    if request.endpoint != "static" and "cache-control" not in present:
        headers.append(("Cache-Control", "no-store"))
    response.headers.extend(headers)
    return response


class KeptSerializerSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the cookie's serializer built once per secret key
    instead of twice a request (opening and saving); signing and checking are Flask's own.
    One per app (``create_app``), so the key alone tells its serializers apart."""

    def __init__(self) -> None:
        self._serializers: dict[Any, URLSafeTimedSerializer] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        serializer = self._serializers.get(app.secret_key)
        if serializer is None:
            serializer = super().get_signing_serializer(app)
            if serializer is not None:
                self._serializers = {app.secret_key: serializer}  # a new key replaces the old
        return serializer
