"""chat: room settings, bans and timeouts, roles, blocked terms, emotes (seeded with globals)

Revision ID: 0003_chat
Revises: 0002_video
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

import livecast.store.base

revision = "0003_chat"
down_revision = "0002_video"
branch_labels = None
depends_on = None

# Global emotes every user may post; their images are drawn by livecast.chat.emotes.
GLOBAL_EMOTES = [("1", "LiveHype"), ("2", "LiveLove"), ("3", "LiveWave"), ("4", "LiveGG"), ("5", "LiveLUL")]


def upgrade() -> None:
    op.create_table('chat_bans',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('moderator_id', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', livecast.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_chat_bans_channel_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_chat_bans_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_bans')),
    sa.UniqueConstraint('channel_id', 'user_id', name='uq_chat_bans_channel_user')
    )
    with op.batch_alter_table('chat_bans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chat_bans_channel_id'), ['channel_id'], unique=False)

    op.create_table('chat_blocked_terms',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('text', sa.String(length=500), nullable=False),
    sa.Column('moderator_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', livecast.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_chat_blocked_terms_channel_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_blocked_terms'))
    )
    with op.batch_alter_table('chat_blocked_terms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chat_blocked_terms_channel_id'), ['channel_id'], unique=False)

    op.create_table('chat_roles',
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('months', sa.Integer(), nullable=False),
    sa.Column('tier', sa.Integer(), nullable=False),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_chat_roles_channel_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_chat_roles_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('channel_id', 'user_id', 'role', name=op.f('pk_chat_roles'))
    )
    op.create_table('chat_settings',
    sa.Column('channel_id', sa.String(length=32), nullable=False),
    sa.Column('slow_seconds', sa.Integer(), nullable=False),
    sa.Column('followers_only_minutes', sa.Integer(), nullable=False),
    sa.Column('subscribers_only', sa.Boolean(), nullable=False),
    sa.Column('emote_only', sa.Boolean(), nullable=False),
    sa.Column('unique_chat', sa.Boolean(), nullable=False),
    sa.Column('automod_level', sa.Integer(), nullable=False),
    sa.Column('updated_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['users.id'], name=op.f('fk_chat_settings_channel_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('channel_id', name=op.f('pk_chat_settings'))
    )
    op.create_table('emotes',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('owner_id', sa.String(length=32), nullable=True),
    sa.Column('tier', sa.Integer(), nullable=False),
    sa.Column('created_at', livecast.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_emotes_owner_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_emotes'))
    )
    with op.batch_alter_table('emotes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_emotes_code'), ['code'], unique=False)
        batch_op.create_index(batch_op.f('ix_emotes_owner_id'), ['owner_id'], unique=False)

    emotes = sa.table(
        "emotes", sa.column("id", sa.String), sa.column("code", sa.String), sa.column("owner_id", sa.String),
        sa.column("tier", sa.Integer), sa.column("created_at", livecast.store.base.UTCDateTime(timezone=True)),
    )
    now = dt.datetime.now(dt.UTC)
    op.bulk_insert(
        emotes, [{"id": i, "code": c, "owner_id": None, "tier": 0, "created_at": now} for i, c in GLOBAL_EMOTES]
    )


def downgrade() -> None:
    with op.batch_alter_table('emotes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_emotes_owner_id'))
        batch_op.drop_index(batch_op.f('ix_emotes_code'))

    op.drop_table('emotes')
    op.drop_table('chat_settings')
    op.drop_table('chat_roles')
    with op.batch_alter_table('chat_blocked_terms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chat_blocked_terms_channel_id'))

    op.drop_table('chat_blocked_terms')
    with op.batch_alter_table('chat_bans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chat_bans_channel_id'))

    op.drop_table('chat_bans')
