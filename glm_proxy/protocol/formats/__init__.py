"""Typed deltas -> client wire formats (OpenAI chat completions; more may follow). Pure."""
