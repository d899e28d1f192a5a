"""readable access log and named devices

The access log's rows say from which browser and what else the request named (a grid's
subject and term), with an index for the pupil filter; device keys say when they were last used.

Revision ID: 0016readable
Revises: 0015pinned
Create Date: 2026-12-06 04:40:43
"""

import sqlalchemy as sa
from alembic import op

import journal.db  # noqa: F401  (custom column types)

revision = "0016readable"
down_revision = "0015pinned"
branch_labels = None
depends_on = None


# Plain ADD/DROP COLUMN, never batch mode: batch mode rebuilds a SQLite table, and the rebuilt
# access_log would lose the triggers that keep it append-only (0004auth).


def upgrade():
    op.add_column("access_log", sa.Column("user_agent", sa.String(length=200), nullable=True))
    op.add_column("access_log", sa.Column("detail", sa.String(length=200), nullable=True))
    op.create_index(
        "ix_access_log_target", "access_log", ["target_type", "target_id"], unique=False
    )
    op.add_column(
        "device_keys",
        sa.Column("last_seen_at", journal.db.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade():
    op.drop_column("device_keys", "last_seen_at")
    op.drop_index("ix_access_log_target", table_name="access_log")
    op.drop_column("access_log", "detail")
    op.drop_column("access_log", "user_agent")
