"""server-side sessions, four-eyes resets, letters claimed once, known-device throttling

Revision ID: 0011sessions
Revises: 0010sealed_totp
Create Date: 2026-12-06 03:40:00

``users.auth_version`` goes: sessions now live in ``user_sessions`` and are ended there, so every
cookie made before this revision signs nobody in (people sign in again once).
"""

import sqlalchemy as sa
from alembic import op

import journal.db  # noqa: F401  (custom column types)


revision = '0011sessions'
down_revision = '0010sealed_totp'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('account_resets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('requested_at', journal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', journal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('approved_by_id', sa.Integer(), nullable=True),
    sa.Column('approved_at', journal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by_id', sa.Integer(), nullable=True),
    sa.Column('cancelled_at', journal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('letter_printed_by_id', sa.Integer(), nullable=True),
    sa.Column('letter_printed_at', journal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', journal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_at', journal.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('password', 'second_factor', 'both')", name=op.f('ck_account_resets_kind')),
    sa.ForeignKeyConstraint(['approved_by_id'], ['users.id'], name=op.f('fk_account_resets_approved_by_id_users')),
    sa.ForeignKeyConstraint(['cancelled_by_id'], ['users.id'], name=op.f('fk_account_resets_cancelled_by_id_users')),
    sa.ForeignKeyConstraint(['letter_printed_by_id'], ['users.id'], name=op.f('fk_account_resets_letter_printed_by_id_users')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_account_resets_requested_by_id_users')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_account_resets_school_id_schools')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_account_resets_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_resets'))
    )
    with op.batch_alter_table('account_resets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_resets_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_resets_user_id'), ['user_id'], unique=False)

    op.create_table('user_sessions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', journal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('second_factor_at', journal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', journal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=20), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('user_agent', sa.String(length=200), nullable=True),
    # Sealed by the app (auth.models.SealedSecret).
    sa.Column('totp_pending', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_sessions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_user_sessions_token_hash'))
    )
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_user_sessions_user_id_ended_at', ['user_id', 'ended_at'], unique=False)

    with op.batch_alter_table('device_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('after_reset_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_device_keys_after_reset_id_account_resets'), 'account_resets', ['after_reset_id'], ['id'])

    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('device', sa.String(length=32), nullable=True))
        batch_op.alter_column('address',
               existing_type=sa.VARCHAR(length=45),
               nullable=True)
        batch_op.create_index('ix_login_failures_username_at', ['username', 'at'], unique=False)

    with op.batch_alter_table('password_resets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim_hash', sa.LargeBinary(length=32), nullable=True))
        batch_op.add_column(sa.Column('account_reset_id', sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_password_resets_claim_hash'), ['claim_hash'])
        batch_op.create_foreign_key(batch_op.f('fk_password_resets_account_reset_id_account_resets'), 'account_resets', ['account_reset_id'], ['id'])

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('auth_version')



def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auth_version', sa.INTEGER(), server_default=sa.text("'1'"), nullable=False))

    with op.batch_alter_table('password_resets', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_password_resets_account_reset_id_account_resets'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_password_resets_claim_hash'), type_='unique')
        batch_op.drop_column('account_reset_id')
        batch_op.drop_column('claim_hash')

    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_login_failures_username_at')
        batch_op.alter_column('address',
               existing_type=sa.VARCHAR(length=45),
               nullable=False)
        batch_op.drop_column('device')

    with op.batch_alter_table('device_keys', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_device_keys_after_reset_id_account_resets'), type_='foreignkey')
        batch_op.drop_column('after_reset_id')

    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_user_sessions_user_id_ended_at')

    op.drop_table('user_sessions')
    with op.batch_alter_table('account_resets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_resets_user_id'))
        batch_op.drop_index(batch_op.f('ix_account_resets_school_id'))

    op.drop_table('account_resets')
