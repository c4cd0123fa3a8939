"""In-memory fakes of costgate's ports, one module per feature package."""
