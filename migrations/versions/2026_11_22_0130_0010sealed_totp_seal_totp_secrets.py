"""seal TOTP secrets: a wider column, and the secrets already stored sealed

Revision ID: 0010sealed_totp
Revises: 0009merge
Create Date: 2026-11-22 01:30:00

The sealing is copied here rather than imported (auth/iin.py may change later; a migration must
not). Without the app's IIN_ENCRYPTION_KEY (``alembic upgrade --sql``) the stored secrets stay
as they are: the app reads them still, and seals each one when it is next written.
"""

import base64
import os

import sqlalchemy as sa
from alembic import op
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app, has_app_context

revision = '0010sealed_totp'
down_revision = '0009merge'
branch_labels = None
depends_on = None

PREFIX = "sealed:v1:"


def _seal(secret: str, encoded_key: str) -> str:
    master = base64.b64decode(encoded_key)
    key = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"class-journal/secret").derive(
        master
    )
    nonce = os.urandom(12)
    return PREFIX + base64.b64encode(nonce + AESGCM(key).encrypt(nonce, secret.encode(), b"secret")).decode()


def upgrade():
    with op.batch_alter_table('users') as batch_op:
        batch_op.alter_column(
            'totp_secret', existing_type=sa.String(length=64), type_=sa.String(length=128)
        )
    if context_is_offline() or not has_app_context():
        return
    key = current_app.config.get("IIN_ENCRYPTION_KEY")
    if not key:
        return
    connection = op.get_bind()
    users = sa.table('users', sa.column('id', sa.Integer), sa.column('totp_secret', sa.String))
    rows = connection.execute(
        sa.select(users.c.id, users.c.totp_secret).where(users.c.totp_secret.is_not(None))
    ).all()
    for user_id, secret in rows:
        if not secret.startswith(PREFIX):
            connection.execute(
                users.update().where(users.c.id == user_id).values(totp_secret=_seal(secret, key))
            )


def context_is_offline() -> bool:
    from alembic import context

    return context.is_offline_mode()


def downgrade():
    # Sealed secrets do not fit the old column: unsealing needs the key, so refuse instead.
    connection = op.get_bind()
    sealed = connection.execute(
        sa.text("SELECT count(*) FROM users WHERE totp_secret LIKE 'sealed:%'")
    ).scalar()
    if sealed:
        raise RuntimeError("sealed TOTP secrets cannot go back to the old column: reset them first")
    with op.batch_alter_table('users') as batch_op:
        batch_op.alter_column(
            'totp_secret', existing_type=sa.String(length=128), type_=sa.String(length=64)
        )
