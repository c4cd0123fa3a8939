"""Data access: the only modules that touch pynamodb or boto3. They return plain domain objects."""
