"""Reconciliation: the ledger proved against Anthropic's own usage and cost records, day by day.

`model` holds the figures and verdicts, `ports` the two sources and the results store, `compare` the
rules, `service` what the function and the CLI run, `admin_api` Anthropic's Usage and Cost Analytics
API over urllib3. The rules, and why, are in docs/decisions.md (2026-12-05).
"""
