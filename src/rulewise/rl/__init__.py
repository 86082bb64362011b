"""Reinforcement learning for ASCL: advantage estimators (GRPO, IFPO), rollouts, rewards and the trainer."""
