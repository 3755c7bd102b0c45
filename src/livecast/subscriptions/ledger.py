"""The double-entry ledger: every money movement is a transaction whose legs sum to zero.

Sign convention: debits are positive, credits negative. Accounts:

- ``cash:<provider>``: money held at the payment provider (debited by charges);
- ``revenue:platform``: the platform's fee on each charge (credited);
- ``payable:creator:<channel id>``: what the platform owes the creator (credited);
- ``refunds`` / ``chargebacks``: the platform's fee given back when a charge is reversed
  (debited), kept apart from revenue so reports show losses separately.

A reversal gives the whole amount back to the payer: the creator's share is taken back from
``payable`` and the platform's fee is booked to ``refunds``/``chargebacks``. Each transaction
has an ``idem_key`` (``charge:<id>``, ``refund:<id>``...) with a unique index, so even a bug
that tried to book the same movement twice would fail instead of doubling money.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.store.base import utcnow
from livecast.subscriptions.models import Charge, LedgerEntry, LedgerTransaction


class LedgerError(Exception):
    pass


def creator_account(channel_id: str) -> str:
    return f"payable:creator:{channel_id}"


def cash_account(provider: str) -> str:
    return f"cash:{provider}"


async def post(db: AsyncSession, idem_key: str, kind: str, charge: Charge,
               legs: list[tuple[str, int]]) -> LedgerTransaction:
    """Write one balanced transaction; an unbalanced one is a programming error, never stored."""
    if sum(amount for _, amount in legs) != 0:
        raise LedgerError(f"unbalanced transaction {idem_key}: {legs}")
    txn = LedgerTransaction(idem_key=idem_key, kind=kind, charge_id=charge.id, channel_id=charge.channel_id,
                            created_at=utcnow())
    db.add(txn)
    await db.flush()
    for account, amount in legs:
        if amount:
            db.add(LedgerEntry(transaction_id=txn.id, account=account, amount=amount, currency=charge.currency))
    await db.flush()
    return txn


async def book_charge(db: AsyncSession, charge: Charge) -> LedgerTransaction:
    return await post(db, f"charge:{charge.id}", "charge", charge, [
        (cash_account(charge.provider), charge.amount),
        ("revenue:platform", -charge.platform_fee),
        (creator_account(charge.channel_id), -charge.creator_share),
    ])


async def book_reversal(db: AsyncSession, charge: Charge, kind: str) -> LedgerTransaction:
    """``kind`` is ``refund`` or ``chargeback``."""
    account = "refunds" if kind == "refund" else "chargebacks"
    return await post(db, f"{kind}:{charge.id}", kind, charge, [
        (cash_account(charge.provider), -charge.amount),
        (creator_account(charge.channel_id), charge.creator_share),
        (account, charge.platform_fee),
    ])


async def balances(db: AsyncSession) -> dict[tuple[str, str], int]:
    """Every account's balance, by (account, currency)."""
    rows = await db.execute(
        select(LedgerEntry.account, LedgerEntry.currency, func.sum(LedgerEntry.amount))
        .group_by(LedgerEntry.account, LedgerEntry.currency)
    )
    return {(account, currency): int(total or 0) for account, currency, total in rows}


async def unbalanced_transactions(db: AsyncSession) -> list[str]:
    """Transactions whose legs do not sum to zero per currency (should always be empty)."""
    rows = await db.execute(select(LedgerEntry.transaction_id, LedgerEntry.currency, LedgerEntry.amount))
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for txn, currency, amount in rows:
        sums[(txn, currency)] += int(amount)
    return sorted({txn for (txn, _), total in sums.items() if total != 0})
