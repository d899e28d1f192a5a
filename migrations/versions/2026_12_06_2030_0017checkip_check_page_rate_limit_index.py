"""check page rate-limit index

The public check page counts one address's uploads in the last minute on every upload; this
partial index serves that count without costing the other access-log rows anything.

Revision ID: 0017checkip
Revises: 0016readable
Create Date: 2026-12-06 20:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0017checkip"
down_revision = "0016readable"
branch_labels = None
depends_on = None

WHERE = sa.text("action = 'check.upload'")


def upgrade():
    op.create_index(
        "ix_access_log_check_ip",
        "access_log",
        ["ip", "at"],
        unique=False,
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )


def downgrade():
    op.drop_index("ix_access_log_check_ip", table_name="access_log")
