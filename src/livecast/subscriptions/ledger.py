"""The double-entry ledger: every money movement is a transaction whose legs sum to zero.

Sign convention: debits are positive, credits negative. Accounts:

- ``cash:<provider>``: money held at the payment provider (debited by charges);
- ``revenue:platform``: the platform's fee on each charge (credited);
- ``payable:creator:<channel id>``: what the platform owes the creator (credited);
- ``refunds`` / ``chargebacks``: the platform's fee given back when a charge is reversed
  (debited), kept apart from revenue so reports show losses separately.

A reversal gives money back to the payer: the creator's part is taken back from ``payable``
and the platform's part is booked to ``refunds``/``chargebacks``. A partial refund reverses
pro rata: after refunds totalling ``R`` of a charge of ``A``, the creator has given back
``floor(share * R / A)`` and the platform the rest of ``R`` (the platform absorbs the rounding
remainder, so a creator is never debited a cent more than their proportion). Each booking is
the difference between two such running totals, so any sequence of partial refunds followed
by a full refund or chargeback reverses exactly ``amount``, ``fee`` and ``share``.

Each transaction has an ``idem_key`` (``charge:<id>``, ``refund:<id>``,
``partial_refund:<id>:<running total>``...) with a unique index, so even a bug that tried to
book the same movement twice would fail instead of doubling money.
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


def creator_part(charge: Charge, refunded: int) -> int:
    """The creator's share of ``refunded`` minor units given back (rounded down; see above)."""
    if charge.amount <= 0:
        return 0
    return charge.creator_share * refunded // charge.amount


async def _book_delta(db: AsyncSession, idem_key: str, kind: str, charge: Charge, before: int,
                      after: int) -> LedgerTransaction:
    account = "chargebacks" if kind == "chargeback" else "refunds"
    creator = creator_part(charge, after) - creator_part(charge, before)
    return await post(db, idem_key, kind, charge, [
        (cash_account(charge.provider), -(after - before)),
        (creator_account(charge.channel_id), creator),
        (account, (after - before) - creator),
    ])


async def book_partial_refund(db: AsyncSession, charge: Charge, refunded_total: int) -> LedgerTransaction | None:
    """Bring the charge's refunds up to the provider's running total ``refunded_total``.

    Keyed by the running total, not by the refund event: the same total seen twice, or a
    smaller (older) total seen after a larger one, books nothing, so replays and out-of-order
    deliveries converge on the same ledger. The caller updates ``charge.amount_refunded``.
    """
    if refunded_total <= charge.amount_refunded or refunded_total >= charge.amount:
        return None
    return await _book_delta(db, f"partial_refund:{charge.id}:{refunded_total}", "refund", charge,
                             charge.amount_refunded, refunded_total)


async def book_reversal(db: AsyncSession, charge: Charge, kind: str) -> LedgerTransaction:
    """``kind`` is ``refund`` or ``chargeback``: reverse what partial refunds have not yet."""
    return await _book_delta(db, f"{kind}:{charge.id}", kind, charge, charge.amount_refunded, charge.amount)


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
