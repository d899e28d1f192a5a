"""gunicorn's settings for the journal, read from the working directory by `gunicorn wsgi:app`
(started in this folder) or named with `-c`. Workers and address stay on the command line:
`gunicorn -w $((2 * cores)) -b 127.0.0.1:8000 wsgi:app` (docs/operations.md §1).
"""

import os

# The app is loaded once, in the master, and each worker is a fork of it: a worker starts in a
# fraction of a second instead of importing everything again (about 3 s of CPU each), and the
# workers share the loaded code's memory (wsgi.py freezes it out of the collector, so that
# collections do not copy it). Measured with 4 workers: ready in 1.4 s instead of 3.2 s, 24 MB
# of private memory a worker instead of 110 MB. A new release needs a restart of the master
# (systemctl restart): HUP starts new workers from the code already loaded.
preload_app = True

# The heartbeat file every worker touches on each request: on tmpfs, not the system disk
# (gunicorn makes it with mkstemp and unlinks it at once).
if os.path.isdir("/dev/shm"):  # noqa: S108
    worker_tmp_dir = "/dev/shm"  # noqa: S108


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    """A worker never uses a connection of the master's pool (it holds none, as a rule: the app
    opens none while loading): two processes on one socket would mix their statements."""
    app = server.app.wsgi()
    app.extensions["journal_db"].engine.dispose(close=False)
