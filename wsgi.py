"""The app, for `flask --app wsgi ...` and for gunicorn (``wsgi:app``).

On a developer's machine the settings `make run` wrote to instance/dev.env are read first
(``journal.config.load_development_env``), so that any command works in a new terminal.
"""

import gc

from journal.app import create_app
from journal.config import load_development_env

load_development_env()
app = create_app()

# Everything loaded so far (routes, templates, models, catalogs) lives as long as the worker:
# taking it out of the collector's generations makes each full collection scan only what
# requests made, instead of pausing a request for the whole app (Python's gc.freeze docs).
gc.collect()
gc.freeze()
