"""Training data: the built-in prompt set (and, later, trajectory synthesis)."""
