"""web and oauth extras: tokens remember the grant they came from

Revision ID: 0005_web
Revises: 0004_api
"""

import sqlalchemy as sa
from alembic import op

import livecast.store.base  # noqa: F401

revision = "0005_web"
down_revision = "0004_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('grant_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_oauth_tokens_grant_id'), ['grant_id'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_oauth_tokens_grant_id_oauth_grants'), 'oauth_grants', ['grant_id'], ['id'],
            ondelete='SET NULL',
        )


def downgrade() -> None:
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_oauth_tokens_grant_id_oauth_grants'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_oauth_tokens_grant_id'))
        batch_op.drop_column('grant_id')
