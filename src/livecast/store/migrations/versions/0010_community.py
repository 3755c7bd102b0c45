"""community: channel points, custom rewards and redemptions, predictions, polls

Revision ID: 0010_community
Revises: 0009_vod
"""

import sqlalchemy as sa
from alembic import op

import livecast.store.base

revision = "0010_community"
down_revision = "0009_vod"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('points_transactions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('idem_key', sa.String(length=160), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_transactions')),
    sa.UniqueConstraint('idem_key', name=op.f('uq_points_transactions_idem_key'))
    )
    with op.batch_alter_table('points_transactions', schema=None) as batch_op:
        batch_op.create_index('ix_points_transactions_channel_user', ['channel_id', 'user_id'], unique=False)

    op.create_table('custom_rewards',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=45), nullable=False),
    sa.Column('prompt', sa.String(length=200), nullable=False),
    sa.Column('cost', sa.BigInteger(), nullable=False),
    sa.Column('background_color', sa.String(length=7), nullable=False),
    sa.Column('is_enabled', sa.Boolean(), nullable=False),
    sa.Column('is_paused', sa.Boolean(), nullable=False),
    sa.Column('is_user_input_required', sa.Boolean(), nullable=False),
    sa.Column('max_per_stream', sa.Integer(), nullable=False),
    sa.Column('max_per_user_per_stream', sa.Integer(), nullable=False),
    sa.Column('global_cooldown_seconds', sa.Integer(), nullable=False),
    sa.Column('skip_queue', sa.Boolean(), nullable=False),
    sa.Column('cooldown_expires_at', livecast.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_custom_rewards_channel_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_custom_rewards')),
    sa.UniqueConstraint('channel_id', 'title', name='uq_custom_rewards_channel_title')
    )
    with op.batch_alter_table('custom_rewards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_custom_rewards_channel_id'), ['channel_id'], unique=False)

    op.create_table('points_balances',
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_points_balances_channel_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_points_balances_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('channel_id', 'user_id', name=op.f('pk_points_balances'))
    )
    with op.batch_alter_table('points_balances', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_points_balances_user_id'), ['user_id'], unique=False)

    op.create_table('polls',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('title', sa.String(length=60), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('duration', sa.Integer(), nullable=False),
    sa.Column('channel_points_voting_enabled', sa.Boolean(), nullable=False),
    sa.Column('channel_points_per_vote', sa.BigInteger(), nullable=False),
    sa.Column('started_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', livecast.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_polls_channel_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_polls'))
    )
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_polls_channel_id'), ['channel_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_polls_ends_at'), ['ends_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_polls_status'), ['status'], unique=False)

    op.create_table('predictions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('title', sa.String(length=45), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('prediction_window', sa.Integer(), nullable=False),
    sa.Column('winning_outcome_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('locks_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('locked_at', livecast.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', livecast.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_predictions_channel_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_predictions'))
    )
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_predictions_channel_id'), ['channel_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_predictions_locks_at'), ['locks_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_predictions_status'), ['status'], unique=False)

    op.create_table('poll_ballots',
    sa.Column('poll_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('choice_id', sa.String(length=36), nullable=False),
    sa.Column('paid_votes', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['poll_id'], ['polls.id'], name=op.f('fk_poll_ballots_poll_id_polls'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_poll_ballots_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('poll_id', 'user_id', name=op.f('pk_poll_ballots'))
    )
    op.create_table('poll_choices',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('poll_id', sa.String(length=36), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=25), nullable=False),
    sa.Column('votes', sa.BigInteger(), nullable=False),
    sa.Column('channel_points_votes', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['poll_id'], ['polls.id'], name=op.f('fk_poll_choices_poll_id_polls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_poll_choices'))
    )
    with op.batch_alter_table('poll_choices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_poll_choices_poll_id'), ['poll_id'], unique=False)

    op.create_table('prediction_bets',
    sa.Column('prediction_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('outcome_id', sa.String(length=36), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('won', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['prediction_id'], ['predictions.id'], name=op.f('fk_prediction_bets_prediction_id_predictions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_prediction_bets_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('prediction_id', 'user_id', name=op.f('pk_prediction_bets'))
    )
    with op.batch_alter_table('prediction_bets', schema=None) as batch_op:
        batch_op.create_index('ix_prediction_bets_outcome_points', ['outcome_id', 'points'], unique=False)

    op.create_table('prediction_outcomes',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('prediction_id', sa.String(length=36), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=25), nullable=False),
    sa.Column('color', sa.String(length=8), nullable=False),
    sa.Column('users', sa.Integer(), nullable=False),
    sa.Column('channel_points', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['prediction_id'], ['predictions.id'], name=op.f('fk_prediction_outcomes_prediction_id_predictions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prediction_outcomes'))
    )
    with op.batch_alter_table('prediction_outcomes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prediction_outcomes_prediction_id'), ['prediction_id'], unique=False)

    op.create_table('reward_redemptions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('reward_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('user_input', sa.String(length=500), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('cost', sa.BigInteger(), nullable=False),
    sa.Column('stream_key', sa.String(length=32), nullable=False),
    sa.Column('redeemed_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_reward_redemptions_channel_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reward_id'], ['custom_rewards.id'], name=op.f('fk_reward_redemptions_reward_id_custom_rewards'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_reward_redemptions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reward_redemptions'))
    )
    with op.batch_alter_table('reward_redemptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reward_redemptions_channel_id'), ['channel_id'], unique=False)
        batch_op.create_index('ix_reward_redemptions_reward_status', ['reward_id', 'status'], unique=False)
        batch_op.create_index('ix_reward_redemptions_reward_stream_user', ['reward_id', 'stream_key', 'user_id'], unique=False)

    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.create_index('uq_polls_running', ['channel_id'], unique=True, sqlite_where=sa.text("status = 'ACTIVE'"), postgresql_where=sa.text("status = 'ACTIVE'"))

    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.create_index('uq_predictions_running', ['channel_id'], unique=True, sqlite_where=sa.text("status IN ('ACTIVE', 'LOCKED')"), postgresql_where=sa.text("status IN ('ACTIVE', 'LOCKED')"))


def downgrade() -> None:
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index('uq_predictions_running')

    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.drop_index('uq_polls_running')

    with op.batch_alter_table('reward_redemptions', schema=None) as batch_op:
        batch_op.drop_index('ix_reward_redemptions_reward_stream_user')
        batch_op.drop_index('ix_reward_redemptions_reward_status')
        batch_op.drop_index(batch_op.f('ix_reward_redemptions_channel_id'))

    op.drop_table('reward_redemptions')
    with op.batch_alter_table('prediction_outcomes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prediction_outcomes_prediction_id'))

    op.drop_table('prediction_outcomes')
    with op.batch_alter_table('prediction_bets', schema=None) as batch_op:
        batch_op.drop_index('ix_prediction_bets_outcome_points')

    op.drop_table('prediction_bets')
    with op.batch_alter_table('poll_choices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_poll_choices_poll_id'))

    op.drop_table('poll_choices')
    op.drop_table('poll_ballots')
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_predictions_status'))
        batch_op.drop_index(batch_op.f('ix_predictions_locks_at'))
        batch_op.drop_index(batch_op.f('ix_predictions_channel_id'))

    op.drop_table('predictions')
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_polls_status'))
        batch_op.drop_index(batch_op.f('ix_polls_ends_at'))
        batch_op.drop_index(batch_op.f('ix_polls_channel_id'))

    op.drop_table('polls')
    with op.batch_alter_table('points_balances', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_points_balances_user_id'))

    op.drop_table('points_balances')
    with op.batch_alter_table('custom_rewards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_custom_rewards_channel_id'))

    op.drop_table('custom_rewards')
    with op.batch_alter_table('points_transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_points_transactions_channel_user')

    op.drop_table('points_transactions')
