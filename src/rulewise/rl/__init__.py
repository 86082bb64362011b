"""Reinforcement learning for ASCL: advantage estimators (GRPO, IFPO) and, later, the trainer."""
