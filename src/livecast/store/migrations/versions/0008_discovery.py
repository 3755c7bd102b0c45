"""discovery: search indexes, viewer stats, recommendations, notifications, blocks

Revision ID: 0008_discovery
Revises: 0007_subs
"""

import sqlalchemy as sa
from alembic import op

import livecast.store.base

revision = "0008_discovery"
down_revision = "0007_subs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # search_docs.name's GIN index uses gin_trgm_ops (typo-tolerant search); SQLite uses search_grams.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    with op.batch_alter_table('follows', schema=None) as batch_op:
        batch_op.create_index('ix_follows_channel_id_id', ['channel_id', 'id'], unique=False)

    op.create_table('co_follows',
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('other_id', sa.String(length=32), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('channel_id', 'other_id', name=op.f('pk_co_follows'))
    )
    with op.batch_alter_table('co_follows', schema=None) as batch_op:
        batch_op.create_index('ix_co_follows_channel_id_weight', ['channel_id', 'weight'], unique=False)

    op.create_table('search_docs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ref_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_search_docs')),
    sa.UniqueConstraint('kind', 'ref_id', name='uq_search_docs_kind_ref')
    )
    with op.batch_alter_table('search_docs', schema=None) as batch_op:
        batch_op.create_index('ix_search_docs_name_trgm', ['name'], unique=False, postgresql_using='gin', postgresql_ops={'name': 'gin_trgm_ops'})

    op.create_table('notification_prefs',
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_notification_prefs_channel_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notification_prefs_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'channel_id', name=op.f('pk_notification_prefs'))
    )
    with op.batch_alter_table('notification_prefs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_prefs_channel_id'), ['channel_id'], unique=False)

    op.create_table('notifications',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('stream_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('read', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notifications_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_user_id_id', ['user_id', 'id'], unique=False)

    op.create_table('search_grams',
    sa.Column('gram', sa.String(length=12), nullable=False),
    sa.Column('doc_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['doc_id'], ['search_docs.id'], name=op.f('fk_search_grams_doc_id_search_docs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('gram', 'doc_id', name=op.f('pk_search_grams'))
    )
    with op.batch_alter_table('search_grams', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_search_grams_doc_id'), ['doc_id'], unique=False)

    op.create_table('user_blocks',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('target_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['target_id'], ['users.id'], name=op.f('fk_user_blocks_target_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_blocks_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_blocks')),
    sa.UniqueConstraint('user_id', 'target_id', name='uq_user_blocks_user_target')
    )
    with op.batch_alter_table('user_blocks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_blocks_user_id'), ['user_id'], unique=False)

    op.create_table('watch_history',
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('minutes', sa.Integer(), nullable=False),
    sa.Column('last_watched_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_watch_history_channel_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_watch_history_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'channel_id', name=op.f('pk_watch_history'))
    )
    op.create_table('stream_stats',
    sa.Column('stream_id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('viewer_sum', sa.Integer(), nullable=False),
    sa.Column('peak_viewers', sa.Integer(), nullable=False),
    sa.Column('viewer_seconds', sa.Integer(), nullable=False),
    sa.Column('chat_messages', sa.Integer(), nullable=False),
    sa.Column('updated_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['stream_id'], ['streams.id'], name=op.f('fk_stream_stats_stream_id_streams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('stream_id', name=op.f('pk_stream_stats'))
    )
    with op.batch_alter_table('stream_stats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stream_stats_channel_id'), ['channel_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('stream_stats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stream_stats_channel_id'))

    op.drop_table('stream_stats')
    op.drop_table('watch_history')
    with op.batch_alter_table('user_blocks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_blocks_user_id'))

    op.drop_table('user_blocks')
    with op.batch_alter_table('search_grams', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_search_grams_doc_id'))

    op.drop_table('search_grams')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_user_id_id')

    op.drop_table('notifications')
    with op.batch_alter_table('notification_prefs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_prefs_channel_id'))

    op.drop_table('notification_prefs')
    with op.batch_alter_table('search_docs', schema=None) as batch_op:
        batch_op.drop_index('ix_search_docs_name_trgm', postgresql_using='gin', postgresql_ops={'name': 'gin_trgm_ops'})

    op.drop_table('search_docs')
    with op.batch_alter_table('co_follows', schema=None) as batch_op:
        batch_op.drop_index('ix_co_follows_channel_id_weight')

    op.drop_table('co_follows')
    with op.batch_alter_table('follows', schema=None) as batch_op:
        batch_op.drop_index('ix_follows_channel_id_id')
