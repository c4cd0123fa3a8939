"""costgate: the domain package shipped to Lambda as the SharedLayer."""
