"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 23:46:12.828123
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('batches',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.Column('job_count', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', models.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index('ux_batches_idempotency_key', ['idempotency_key'], unique=True, postgresql_where=sa.text('idempotency_key IS NOT NULL'), sqlite_where=sa.text('idempotency_key IS NOT NULL'))

    op.create_table('workers',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('cpu_units', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('job_types', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('started_at', models.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_heartbeat', models.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('jobs_succeeded', sa.BigInteger(), nullable=False),
    sa.Column('jobs_failed', sa.BigInteger(), nullable=False),
    sa.Column('draining', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('jobs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=200), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('priority', sa.SmallInteger(), nullable=False),
    sa.Column('cpu_units', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('initial_delay_seconds', sa.Float(), nullable=False),
    sa.Column('backoff_multiplier', sa.Float(), nullable=False),
    sa.Column('timeout_seconds', sa.Float(), nullable=True),
    sa.Column('run_at', models.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=True),
    sa.Column('key', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('not_before', models.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('worker_id', sa.String(length=200), nullable=True),
    sa.Column('cancel_requested_at', models.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('batch_id', sa.Uuid(), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.Column('created_at', models.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('started_at', models.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', models.types.UtcDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'blocked', 'ready', 'running', 'retrying', 'completed', 'failed', 'cancelled')", name='ck_jobs_status'),
    sa.CheckConstraint('cpu_units >= 1 AND memory_mb >= 1', name='ck_jobs_resources'),
    sa.CheckConstraint('max_attempts >= 1', name='ck_jobs_max_attempts'),
    sa.CheckConstraint('priority BETWEEN 0 AND 10', name='ck_jobs_priority'),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_active', ['status'], unique=False, postgresql_where=sa.text("status IN ('blocked', 'pending', 'ready', 'retrying', 'running')"), sqlite_where=sa.text("status IN ('blocked', 'pending', 'ready', 'retrying', 'running')"))
        batch_op.create_index('ix_jobs_batch', ['batch_id'], unique=False, postgresql_where=sa.text('batch_id IS NOT NULL'), sqlite_where=sa.text('batch_id IS NOT NULL'))
        batch_op.create_index('ix_jobs_created', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_jobs_priority_created', ['priority', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_jobs_status_created', ['status', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_jobs_type_created', ['type', 'created_at', 'id'], unique=False)
        batch_op.create_index('ux_jobs_idempotency_key', ['idempotency_key'], unique=True, postgresql_where=sa.text('idempotency_key IS NOT NULL'), sqlite_where=sa.text('idempotency_key IS NOT NULL'))

    op.create_table('job_attempts',
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.String(length=200), nullable=True),
    sa.Column('cpu_units', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('started_at', models.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', models.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('duration_seconds', sa.Float(), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'attempt')
    )
    with op.batch_alter_table('job_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_job_attempts_worker', ['worker_id', 'started_at'], unique=False)

    op.create_table('job_dependencies',
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('depends_on_id', sa.Uuid(), nullable=False),
    sa.CheckConstraint('job_id <> depends_on_id', name='ck_job_dependencies_no_self'),
    sa.ForeignKeyConstraint(['depends_on_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'depends_on_id')
    )
    with op.batch_alter_table('job_dependencies', schema=None) as batch_op:
        batch_op.create_index('ix_job_dependencies_depends_on', ['depends_on_id', 'job_id'], unique=False)

    op.create_table('job_logs',
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('ts', models.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'attempt', 'seq')
    )
    with op.batch_alter_table('job_logs', schema=None) as batch_op:
        batch_op.create_index('ix_job_logs_ts', ['ts'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('job_logs', schema=None) as batch_op:
        batch_op.drop_index('ix_job_logs_ts')

    op.drop_table('job_logs')
    with op.batch_alter_table('job_dependencies', schema=None) as batch_op:
        batch_op.drop_index('ix_job_dependencies_depends_on')

    op.drop_table('job_dependencies')
    with op.batch_alter_table('job_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_job_attempts_worker')

    op.drop_table('job_attempts')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ux_jobs_idempotency_key', postgresql_where=sa.text('idempotency_key IS NOT NULL'), sqlite_where=sa.text('idempotency_key IS NOT NULL'))
        batch_op.drop_index('ix_jobs_type_created')
        batch_op.drop_index('ix_jobs_status_created')
        batch_op.drop_index('ix_jobs_priority_created')
        batch_op.drop_index('ix_jobs_created')
        batch_op.drop_index('ix_jobs_batch', postgresql_where=sa.text('batch_id IS NOT NULL'), sqlite_where=sa.text('batch_id IS NOT NULL'))
        batch_op.drop_index('ix_jobs_active', postgresql_where=sa.text("status IN ('blocked', 'pending', 'ready', 'retrying', 'running')"), sqlite_where=sa.text("status IN ('blocked', 'pending', 'ready', 'retrying', 'running')"))

    op.drop_table('jobs')
    op.drop_table('workers')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_index('ux_batches_idempotency_key', postgresql_where=sa.text('idempotency_key IS NOT NULL'), sqlite_where=sa.text('idempotency_key IS NOT NULL'))

    op.drop_table('batches')
