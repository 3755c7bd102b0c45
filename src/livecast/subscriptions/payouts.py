"""The monthly payout report: what each creator earned, lost to reversals, and is owed.

Read from the ledger, not from charges, so the report is the books: ``net_payable`` is the
credit balance that month's transactions left on ``payable:creator:<id>``. A refund in
December of a November charge lowers December's payout, as a bank statement would.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.identity.models import User
from livecast.subscriptions.ledger import cash_account, creator_account
from livecast.subscriptions.models import LedgerEntry, LedgerTransaction


@dataclass
class PayoutRow:
    creator_id: str
    creator_login: str
    month: str
    currency: str
    charges: int = 0
    gross: int = 0
    platform_fee: int = 0
    creator_share: int = 0
    refunds: int = 0  # creator share taken back by refunds
    chargebacks: int = 0  # creator share taken back by chargebacks
    net_payable: int = 0


FIELDS = list(PayoutRow.__dataclass_fields__)


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    try:
        start = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"month must look like 2026-11, not {month!r}") from None
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


async def report(db: AsyncSession, month: str) -> list[PayoutRow]:
    start, end = month_bounds(month)
    stmt = select(LedgerTransaction.channel_id, LedgerTransaction.kind, LedgerEntry.account,
                  LedgerEntry.currency, LedgerEntry.amount).join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id).where(
        LedgerTransaction.created_at >= start, LedgerTransaction.created_at < end)
    rows: dict[tuple[str, str], PayoutRow] = {}
    for channel_id, kind, account, currency, amount in (await db.execute(stmt)).all():
        row = rows.get((channel_id, currency))
        if row is None:
            row = rows[(channel_id, currency)] = PayoutRow(channel_id, "", month, currency)
        amount = int(amount)
        if account == creator_account(channel_id):
            row.net_payable -= amount
            if kind == "charge":
                row.creator_share -= amount
            elif kind == "refund":
                row.refunds += amount
            else:
                row.chargebacks += amount
        elif kind == "charge" and account.startswith(cash_account("")):
            row.gross += amount
            row.charges += 1
        elif kind == "charge" and account == "revenue:platform":
            row.platform_fee -= amount
    if rows:
        users = await db.execute(select(User.id, User.login).where(User.id.in_({c for c, _ in rows})))
        logins = dict(users.all())
        for (channel_id, _), row in rows.items():
            row.creator_login = logins.get(channel_id, "")
    return sorted(rows.values(), key=lambda r: (r.creator_login, r.currency))


def to_csv(rows: list[PayoutRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return buf.getvalue()
