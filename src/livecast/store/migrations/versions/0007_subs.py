"""subscriptions, payments and ledger

Revision ID: 0007_subs
Revises: 0006_media
"""

import sqlalchemy as sa
from alembic import op

import livecast.store.base

revision = "0007_subs"
down_revision = "0006_media"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_transactions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('idem_key', sa.String(length=160), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('charge_id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transactions')),
    sa.UniqueConstraint('idem_key', name=op.f('uq_ledger_transactions_idem_key'))
    )
    op.create_index(op.f('ix_ledger_transactions_channel_id'), 'ledger_transactions', ['channel_id'], unique=False)
    op.create_index(op.f('ix_ledger_transactions_charge_id'), 'ledger_transactions', ['charge_id'], unique=False)
    op.create_index(op.f('ix_ledger_transactions_created_at'), 'ledger_transactions', ['created_at'], unique=False)
    op.create_table('sub_jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=160), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('subscription_id', sa.String(length=32), nullable=False),
    sa.Column('run_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('locked_by', sa.String(length=64), nullable=False),
    sa.Column('locked_until', livecast.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=500), nullable=False),
    sa.Column('finished_at', livecast.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sub_jobs')),
    sa.UniqueConstraint('key', name=op.f('uq_sub_jobs_key'))
    )
    op.create_index(op.f('ix_sub_jobs_run_at'), 'sub_jobs', ['run_at'], unique=False)
    op.create_index(op.f('ix_sub_jobs_status'), 'sub_jobs', ['status'], unique=False)
    op.create_index(op.f('ix_sub_jobs_subscription_id'), 'sub_jobs', ['subscription_id'], unique=False)
    op.create_table('sub_provider_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('ref', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('received_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sub_provider_events')),
    sa.UniqueConstraint('provider', 'event_id', name='uq_sub_provider_events_event')
    )
    op.create_index(op.f('ix_sub_provider_events_ref'), 'sub_provider_events', ['ref'], unique=False)
    op.create_table('ledger_entries',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('transaction_id', sa.String(length=32), nullable=False),
    sa.Column('account', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_entries_transaction_id_ledger_transactions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries'))
    )
    op.create_index(op.f('ix_ledger_entries_account'), 'ledger_entries', ['account'], unique=False)
    op.create_index(op.f('ix_ledger_entries_transaction_id'), 'ledger_entries', ['transaction_id'], unique=False)
    op.create_table('sub_channel_terms',
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('prices', sa.JSON(), nullable=True),
    sa.Column('share_percent', sa.Integer(), nullable=True),
    sa.Column('updated_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_sub_channel_terms_channel_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('channel_id', name=op.f('pk_sub_channel_terms'))
    )
    op.create_table('sub_charges',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('provider_ref', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('payer_id', sa.String(length=32), nullable=False),
    sa.Column('tier', sa.String(length=8), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('platform_fee', sa.BigInteger(), nullable=False),
    sa.Column('creator_share', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_sub_charges_channel_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sub_charges')),
    sa.UniqueConstraint('provider', 'provider_ref', name='uq_sub_charges_provider_ref')
    )
    op.create_index(op.f('ix_sub_charges_channel_id'), 'sub_charges', ['channel_id'], unique=False)
    op.create_table('subscriptions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('tier', sa.String(length=8), nullable=False),
    sa.Column('next_tier', sa.String(length=8), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('auto_renew', sa.Boolean(), nullable=False),
    sa.Column('is_gift', sa.Boolean(), nullable=False),
    sa.Column('gifter_id', sa.String(length=32), nullable=True),
    sa.Column('gift_anonymous', sa.Boolean(), nullable=False),
    sa.Column('cumulative_months', sa.Integer(), nullable=False),
    sa.Column('streak_months', sa.Integer(), nullable=False),
    sa.Column('resub_share_available', sa.Boolean(), nullable=False),
    sa.Column('charge_id', sa.String(length=32), nullable=True),
    sa.Column('started_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('current_period_start', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('current_period_end', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', livecast.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_subscriptions_channel_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_subscriptions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions')),
    sa.UniqueConstraint('channel_id', 'user_id', name='uq_subscriptions_channel_user')
    )
    op.create_index(op.f('ix_subscriptions_channel_id'), 'subscriptions', ['channel_id'], unique=False)
    op.create_index(op.f('ix_subscriptions_state'), 'subscriptions', ['state'], unique=False)
    op.create_index(op.f('ix_subscriptions_user_id'), 'subscriptions', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_subscriptions_user_id'), table_name='subscriptions')
    op.drop_index(op.f('ix_subscriptions_state'), table_name='subscriptions')
    op.drop_index(op.f('ix_subscriptions_channel_id'), table_name='subscriptions')
    op.drop_table('subscriptions')
    op.drop_index(op.f('ix_sub_charges_channel_id'), table_name='sub_charges')
    op.drop_table('sub_charges')
    op.drop_table('sub_channel_terms')
    op.drop_index(op.f('ix_ledger_entries_transaction_id'), table_name='ledger_entries')
    op.drop_index(op.f('ix_ledger_entries_account'), table_name='ledger_entries')
    op.drop_table('ledger_entries')
    op.drop_index(op.f('ix_sub_provider_events_ref'), table_name='sub_provider_events')
    op.drop_table('sub_provider_events')
    op.drop_index(op.f('ix_sub_jobs_subscription_id'), table_name='sub_jobs')
    op.drop_index(op.f('ix_sub_jobs_status'), table_name='sub_jobs')
    op.drop_index(op.f('ix_sub_jobs_run_at'), table_name='sub_jobs')
    op.drop_table('sub_jobs')
    op.drop_index(op.f('ix_ledger_transactions_created_at'), table_name='ledger_transactions')
    op.drop_index(op.f('ix_ledger_transactions_charge_id'), table_name='ledger_transactions')
    op.drop_index(op.f('ix_ledger_transactions_channel_id'), table_name='ledger_transactions')
    op.drop_table('ledger_transactions')
