"""Infrastructure tests: template.yaml against the code it deploys."""
