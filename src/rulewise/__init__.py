"""rulewise: reasoning-based safety alignment of LLMs.

Teach a model to stay safe without becoming useless: adaptive rule consultation as tool use
(ASCL, trained with IFPO), reasoning-based preference optimisation (SaRO), and an evaluation
harness for the safety–utility trade-off.
"""

__version__ = "0.1.0"
