"""device seq summary

Each device key keeps the report of its device_seq numbers (missing ranges, reused numbers)
up to the highest one folded in, so that a sync batch no longer reads every entry the device
ever sent. Empty for existing keys: their first batch makes it from all their entries once.

Revision ID: 0018seqsum
Revises: 0017checkip
Create Date: 2026-12-06 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0018seqsum"
down_revision = "0017checkip"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("device_keys") as batch_op:
        batch_op.add_column(sa.Column("seq_summary", sa.JSON(none_as_null=True), nullable=True))


def downgrade():
    with op.batch_alter_table("device_keys") as batch_op:
        batch_op.drop_column("seq_summary")
