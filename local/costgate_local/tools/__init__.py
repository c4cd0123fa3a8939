"""Offline tools of the costgate CLI (not shipped to Lambda)."""
