"""Read models built from the event log: funding-source status, balances and caps per
institution and year, vouchers, payables (DESIGN.md §5). ``projections`` imports ``ledger``,
never the other way round."""
