from django.db import models


class Visit(models.Model):
    """One page view, stored in the instance's own database."""

    at = models.DateTimeField(auto_now_add=True)
