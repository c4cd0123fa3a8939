"""The embedded local stack (moto as AWS, HTTP front, Claude simulator); not shipped to Lambda."""
