"""The turkey instance (seed: cts/settings/turkey.py)."""
from .base import *  # noqa: F401,F403
