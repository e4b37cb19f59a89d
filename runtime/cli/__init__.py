"""Command-line entry points: ``skyfix`` (all tools) and ``runtime`` (the onboard group)."""
