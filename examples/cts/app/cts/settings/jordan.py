"""The jordan instance (seed: cts/settings/jordan.py)."""
from .base import *  # noqa: F401,F403
