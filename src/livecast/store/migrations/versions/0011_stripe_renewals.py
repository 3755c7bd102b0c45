"""stripe renewals: saved off-session payment details on subscriptions, partial refunds on charges

Revision ID: 0011_stripe_renewals
Revises: 0010_community
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_stripe_renewals"
down_revision = "0010_community"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider_customer", sa.String(length=255), server_default="", nullable=False))
        batch_op.add_column(sa.Column("provider_payment_method", sa.String(length=255), server_default="",
                                      nullable=False))
    with op.batch_alter_table("sub_charges", schema=None) as batch_op:
        batch_op.add_column(sa.Column("amount_refunded", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("sub_charges", schema=None) as batch_op:
        batch_op.drop_column("amount_refunded")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("provider_payment_method")
        batch_op.drop_column("provider_customer")
