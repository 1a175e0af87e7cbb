from django.db import models


class Message(models.Model):
    room = models.CharField(max_length=100)
    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True)
