"""The iraq instance (seed: cts/settings/iraq.py)."""
from .base import *  # noqa: F401,F403
