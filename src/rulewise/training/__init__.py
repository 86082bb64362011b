"""Trainers: thin layers over TRL that add configs, resumption, curves and checkpoints."""
