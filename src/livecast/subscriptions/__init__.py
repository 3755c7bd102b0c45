"""Channel subscriptions: tiers and prices, payments through providers, a double-entry ledger,
entitlements for chat and the API, and the durable renewal/expiry jobs."""
