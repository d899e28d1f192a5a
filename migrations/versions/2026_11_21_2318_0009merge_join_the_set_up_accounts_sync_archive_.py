"""join the set-up, accounts, sync, archive and terms branches

Revision ID: 0009merge
Revises: 0004auth, 0005sync, 0006setup, 0007archive, 0008terms
Create Date: 2026-11-21 23:18:58.573220
"""

import sqlalchemy as sa
from alembic import op

import journal.db  # noqa: F401  (custom column types)


revision = '0009merge'
down_revision = ('0004auth', '0005sync', '0006setup', '0007archive', '0008terms')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
