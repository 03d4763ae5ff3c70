"""Locust scenarios for providers, treasury and auditors against the HTTP API.

The HTTP API arrives with the next issue; until then the throughput measurements are the
in-process benchmarks in ``benchmarks/`` (see README.md, "Benchmarks")."""
