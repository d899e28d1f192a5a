"""user sign-in version and language

Revision ID: 0003user_prefs
Revises: 0002history_guard
Create Date: 2026-11-21 21:48:17.406659
"""

import sqlalchemy as sa
from alembic import op

import journal.db  # noqa: F401  (custom column types)



revision = '0003user_prefs'
down_revision = '0002history_guard'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auth_version', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('language', sa.String(length=5), nullable=True))



def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('language')
        batch_op.drop_column('auth_version')

