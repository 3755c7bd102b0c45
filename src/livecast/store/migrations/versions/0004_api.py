"""helix and eventsub: eventsub subscriptions and the webhook outbox

Revision ID: 0004_api
Revises: 0003_chat
"""

import sqlalchemy as sa
from alembic import op

import livecast.store.base

revision = "0004_api"
down_revision = "0003_chat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('eventsub_subscriptions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=8), nullable=False),
    sa.Column('condition', sa.JSON(), nullable=False),
    sa.Column('condition_key', sa.String(length=512), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=True),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('callback', sa.String(length=512), nullable=False),
    sa.Column('secret', sa.String(length=100), nullable=False),
    sa.Column('session_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=64), nullable=False),
    sa.Column('cost', sa.Integer(), nullable=False),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('connected_at', livecast.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('disconnected_at', livecast.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_eventsub_subscriptions'))
    )
    with op.batch_alter_table('eventsub_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_eventsub_subscriptions_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_eventsub_subscriptions_condition_key'), ['condition_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_eventsub_subscriptions_session_id'), ['session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_eventsub_subscriptions_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_eventsub_subscriptions_type'), ['type'], unique=False)

    op.create_table('eventsub_messages',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('subscription_id', sa.String(length=36), nullable=False),
    sa.Column('event_key', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.String(length=256), nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['eventsub_subscriptions.id'], name=op.f('fk_eventsub_messages_subscription_id_eventsub_subscriptions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_eventsub_messages')),
    sa.UniqueConstraint('message_id', name=op.f('uq_eventsub_messages_message_id')),
    sa.UniqueConstraint('subscription_id', 'event_key', name='uq_eventsub_messages_event')
    )
    with op.batch_alter_table('eventsub_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_eventsub_messages_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_eventsub_messages_subscription_id'), ['subscription_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('eventsub_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_eventsub_messages_subscription_id'))
        batch_op.drop_index(batch_op.f('ix_eventsub_messages_status'))
    op.drop_table('eventsub_messages')
    with op.batch_alter_table('eventsub_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_eventsub_subscriptions_type'))
        batch_op.drop_index(batch_op.f('ix_eventsub_subscriptions_status'))
        batch_op.drop_index(batch_op.f('ix_eventsub_subscriptions_session_id'))
        batch_op.drop_index(batch_op.f('ix_eventsub_subscriptions_condition_key'))
        batch_op.drop_index(batch_op.f('ix_eventsub_subscriptions_client_id'))
    op.drop_table('eventsub_subscriptions')
