"""costgate test suites: unit, integration, infrastructure."""
