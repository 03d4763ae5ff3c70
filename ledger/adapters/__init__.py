"""Adapters at the edge of the domain: the only place in ``ledger`` that knows SQL."""
