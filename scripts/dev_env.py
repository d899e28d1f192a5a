"""Write development secrets to INSTANCE/dev.env once (used by `make run`; never committed)."""

import base64
import os
import secrets
import sys
from pathlib import Path

instance = Path(sys.argv[1])
instance.mkdir(parents=True, exist_ok=True)
env = instance / "dev.env"
# Settings a dev.env written by an older version lacks are added to it.
LATER = {"JOURNAL_ENV": "development"}
if env.exists():
    present = {line.split("=", 1)[0] for line in env.read_text().splitlines() if "=" in line}
    missing = {k: v for k, v in LATER.items() if k not in present}
    if missing:
        with env.open("a") as fh:
            fh.writelines(f"{k}={v}\n" for k, v in missing.items())
else:
    values = {
        "JOURNAL_SECRET_KEY": secrets.token_urlsafe(32),
        "JOURNAL_IIN_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "JOURNAL_IIN_HMAC_KEY": base64.b64encode(os.urandom(32)).decode(),
        "JOURNAL_BACKUP_KEY": base64.b64encode(os.urandom(32)).decode(),
        # Served over plain http on 127.0.0.1 in development.
        "JOURNAL_SESSION_COOKIE_SECURE": "false",
        **LATER,
    }
    fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(f"{k}={v}\n" for k, v in values.items())
    print(f"wrote development secrets to {env}")
