"""fanzha (反诈): fraud-lure detection for Chinese social-media content aimed at young users.

The design card's folders map onto subpackages (see pyproject.toml):
``models/`` → ``fanzha.models`` (inference, no torch), ``training/`` → ``fanzha.training``,
``datasets/`` → ``fanzha.datasets``, ``serving/`` → ``fanzha.serving``.
"""

__version__ = "0.1.0"
