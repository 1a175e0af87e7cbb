from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from .models import Message


class EchoConsumer(AsyncWebsocketConsumer):
    """Echoes every text frame to everyone in the room, through the Redis channel layer
    (so clients on other Daphne processes get it too), and keeps it in PostgreSQL."""

    async def connect(self):
        self.group = "echo." + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            return
        await database_sync_to_async(Message.objects.create)(room=self.group, text=text_data)
        await self.channel_layer.group_send(self.group, {"type": "echo.message", "text": text_data})

    async def echo_message(self, event):
        await self.send(text_data=event["text"])
