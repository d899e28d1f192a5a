"""schools, journals and logs

Revision ID: 0001schools
Revises: 
Create Date: 2026-11-21 21:42:56.164534
"""

import sqlalchemy as sa
from alembic import op

import journal.db

import journal.db  # noqa: F401  (custom column types)


revision = '0001schools'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('schools',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('domain', sa.String(length=100), nullable=False),
    sa.Column('log_vkey', sa.String(length=300), nullable=True),
    sa.Column('created_at', journal.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schools')),
    sa.UniqueConstraint('domain', name=op.f('uq_schools_domain'))
    )
    op.create_table('school_years',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=20), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_school_years_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_school_years')),
    sa.UniqueConstraint('school_id', 'name', name=op.f('uq_school_years_school_id_name'))
    )
    op.create_table('students',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('last_name', sa.String(length=100), nullable=False),
    sa.Column('first_name', sa.String(length=100), nullable=False),
    sa.Column('patronymic', sa.String(length=100), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=False),
    sa.Column('iin_encrypted', sa.LargeBinary(), nullable=True),
    sa.Column('iin_hmac', sa.LargeBinary(length=32), nullable=True),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_students_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_students')),
    sa.UniqueConstraint('school_id', 'iin_hmac', name=op.f('uq_students_school_id_iin_hmac'))
    )
    with op.batch_alter_table('students', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_students_school_id'), ['school_id'], unique=False)

    op.create_table('subjects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('graded', sa.Boolean(), nullable=False),
    sa.Column('by_half_year', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_subjects_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subjects')),
    sa.UniqueConstraint('school_id', 'name', name=op.f('uq_subjects_school_id_name'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=100), nullable=False),
    sa.Column('full_name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=True),
    sa.Column('created_at', journal.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_users_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_school_id'), ['school_id'], unique=False)

    op.create_table('class_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('school_year_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('grade_level', sa.Integer(), nullable=False),
    sa.Column('class_teacher_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['class_teacher_id'], ['users.id'], name=op.f('fk_class_groups_class_teacher_id_users')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_class_groups_school_id_schools')),
    sa.ForeignKeyConstraint(['school_year_id'], ['school_years.id'], name=op.f('fk_class_groups_school_year_id_school_years')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_class_groups')),
    sa.UniqueConstraint('school_year_id', 'name', name=op.f('uq_class_groups_school_year_id_name'))
    )
    with op.batch_alter_table('class_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_class_groups_school_id'), ['school_id'], unique=False)

    op.create_table('device_keys',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('alg', sa.String(length=16), nullable=False),
    sa.Column('public_key', sa.LargeBinary(), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=True),
    sa.Column('created_at', journal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', journal.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("alg IN ('ed25519', 'ecdsa-p256')", name=op.f('ck_device_keys_alg')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_device_keys_user_id_users')),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_device_keys'))
    )
    with op.batch_alter_table('device_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_keys_user_id'), ['user_id'], unique=False)

    op.create_table('role_grants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=True),
    sa.Column('student_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("role IN ('teacher', 'class_teacher', 'school_admin', 'parent', 'student', 'registrar', 'inspector', 'operator')", name=op.f('ck_role_grants_role')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_role_grants_school_id_schools')),
    sa.ForeignKeyConstraint(['student_id'], ['students.id'], name=op.f('fk_role_grants_student_id_students')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_role_grants_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_role_grants')),
    sa.UniqueConstraint('user_id', 'role', 'school_id', 'student_id', name=op.f('uq_role_grants_user_id_role_school_id_student_id'))
    )
    with op.batch_alter_table('role_grants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_role_grants_user_id'), ['user_id'], unique=False)

    op.create_table('terms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_year_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('closed_at', journal.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('quarter', 'half')", name=op.f('ck_terms_kind')),
    sa.ForeignKeyConstraint(['school_year_id'], ['school_years.id'], name=op.f('fk_terms_school_year_id_school_years')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_terms')),
    sa.UniqueConstraint('school_year_id', 'kind', 'number', name=op.f('uq_terms_school_year_id_kind_number'))
    )
    op.create_table('enrollments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=False),
    sa.Column('class_group_id', sa.Integer(), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['class_group_id'], ['class_groups.id'], name=op.f('fk_enrollments_class_group_id_class_groups')),
    sa.ForeignKeyConstraint(['student_id'], ['students.id'], name=op.f('fk_enrollments_student_id_students')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollments'))
    )
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.create_index('ix_enrollments_class_dates', ['class_group_id', 'starts_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrollments_student_id'), ['student_id'], unique=False)

    op.create_table('lessons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('class_group_id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('date', sa.Date(), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['class_group_id'], ['class_groups.id'], name=op.f('fk_lessons_class_group_id_class_groups')),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], name=op.f('fk_lessons_subject_id_subjects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lessons')),
    sa.UniqueConstraint('class_group_id', 'date', 'period', name=op.f('uq_lessons_class_group_id_date_period'))
    )
    with op.batch_alter_table('lessons', schema=None) as batch_op:
        batch_op.create_index('ix_lessons_class_subject_date', ['class_group_id', 'subject_id', 'date'], unique=False)

    op.create_table('logs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('origin', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('class_group_id', sa.Integer(), nullable=True),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.CheckConstraint("kind IN ('journal', 'ledger')", name=op.f('ck_logs_kind')),
    sa.ForeignKeyConstraint(['class_group_id'], ['class_groups.id'], name=op.f('fk_logs_class_group_id_class_groups')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_logs_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_logs')),
    sa.UniqueConstraint('class_group_id', name=op.f('uq_logs_class_group_id')),
    sa.UniqueConstraint('origin', name=op.f('uq_logs_origin'))
    )
    with op.batch_alter_table('logs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_logs_school_id'), ['school_id'], unique=False)

    op.create_table('teaching_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('class_group_id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['class_group_id'], ['class_groups.id'], name=op.f('fk_teaching_assignments_class_group_id_class_groups')),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], name=op.f('fk_teaching_assignments_subject_id_subjects')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_teaching_assignments_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_teaching_assignments')),
    sa.UniqueConstraint('user_id', 'class_group_id', 'subject_id', name=op.f('uq_teaching_assignments_user_id_class_group_id_subject_id'))
    )
    with op.batch_alter_table('teaching_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_teaching_assignments_user_id'), ['user_id'], unique=False)

    op.create_table('timetable_slots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('class_group_id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('weekday', sa.Integer(), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['class_group_id'], ['class_groups.id'], name=op.f('fk_timetable_slots_class_group_id_class_groups')),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], name=op.f('fk_timetable_slots_subject_id_subjects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_timetable_slots')),
    sa.UniqueConstraint('class_group_id', 'weekday', 'period', name=op.f('uq_timetable_slots_class_group_id_weekday_period'))
    )
    op.create_table('checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('log_id', sa.Integer(), nullable=False),
    sa.Column('size', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('root_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', journal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('previous_size', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('consistency_proof', sa.Text(), nullable=True),
    sa.Column('timestamp_token', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['log_id'], ['logs.id'], name=op.f('fk_checkpoints_log_id_logs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkpoints')),
    sa.UniqueConstraint('log_id', 'size', name=op.f('uq_checkpoints_log_id_size'))
    )
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkpoints_log_id'), ['log_id'], unique=False)

    op.create_table('entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('log_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('device_kid', sa.String(length=64), nullable=True),
    sa.Column('device_seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('lesson_id', sa.Integer(), nullable=True),
    sa.Column('student_id', sa.Integer(), nullable=True),
    sa.Column('cell', sa.String(length=80), nullable=True),
    sa.Column('received_at', journal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('leaf', sa.LargeBinary(), nullable=False),
    sa.Column('leaf_hash', sa.LargeBinary(length=32), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_entries_author_id_users')),
    sa.ForeignKeyConstraint(['lesson_id'], ['lessons.id'], name=op.f('fk_entries_lesson_id_lessons')),
    sa.ForeignKeyConstraint(['log_id'], ['logs.id'], name=op.f('fk_entries_log_id_logs')),
    sa.ForeignKeyConstraint(['student_id'], ['students.id'], name=op.f('fk_entries_student_id_students')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_entries')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_entries_entry_id')),
    sa.UniqueConstraint('log_id', 'seq', name=op.f('uq_entries_log_id_seq'))
    )
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.create_index('ix_entries_cell', ['log_id', 'cell'], unique=False)
        batch_op.create_index('ix_entries_device', ['device_kid', 'device_seq'], unique=False)
        batch_op.create_index(batch_op.f('ix_entries_lesson_id'), ['lesson_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_entries_student_id'), ['student_id'], unique=False)

    op.create_table('supersessions',
    sa.Column('correction_entry_id', sa.String(length=36), nullable=False),
    sa.Column('superseded_entry_id', sa.String(length=36), nullable=False),
    sa.Column('log_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['correction_entry_id'], ['entries.entry_id'], name=op.f('fk_supersessions_correction_entry_id_entries')),
    sa.ForeignKeyConstraint(['log_id'], ['logs.id'], name=op.f('fk_supersessions_log_id_logs')),
    sa.PrimaryKeyConstraint('correction_entry_id', 'superseded_entry_id', name=op.f('pk_supersessions'))
    )
    with op.batch_alter_table('supersessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_supersessions_superseded_entry_id'), ['superseded_entry_id'], unique=False)



def downgrade():
    with op.batch_alter_table('supersessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_supersessions_superseded_entry_id'))

    op.drop_table('supersessions')
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_entries_student_id'))
        batch_op.drop_index(batch_op.f('ix_entries_lesson_id'))
        batch_op.drop_index('ix_entries_device')
        batch_op.drop_index('ix_entries_cell')

    op.drop_table('entries')
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkpoints_log_id'))

    op.drop_table('checkpoints')
    op.drop_table('timetable_slots')
    with op.batch_alter_table('teaching_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_teaching_assignments_user_id'))

    op.drop_table('teaching_assignments')
    with op.batch_alter_table('logs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_logs_school_id'))

    op.drop_table('logs')
    with op.batch_alter_table('lessons', schema=None) as batch_op:
        batch_op.drop_index('ix_lessons_class_subject_date')

    op.drop_table('lessons')
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrollments_student_id'))
        batch_op.drop_index('ix_enrollments_class_dates')

    op.drop_table('enrollments')
    op.drop_table('terms')
    with op.batch_alter_table('role_grants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_role_grants_user_id'))

    op.drop_table('role_grants')
    with op.batch_alter_table('device_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_keys_user_id'))

    op.drop_table('device_keys')
    with op.batch_alter_table('class_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_class_groups_school_id'))

    op.drop_table('class_groups')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_school_id'))

    op.drop_table('users')
    op.drop_table('subjects')
    with op.batch_alter_table('students', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_students_school_id'))

    op.drop_table('students')
    op.drop_table('school_years')
    op.drop_table('schools')
