"""voucher-ledger's domain: aggregates, policy rules and the application (commands)."""
