"""Contract tests: each port's in-memory fake and its real adapter pass the same tests."""
