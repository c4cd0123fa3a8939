"""costgate test suites: unit, contract (each fake and its real store pass the same tests), integration,
e2e, simulator, local, infrastructure, architecture."""
