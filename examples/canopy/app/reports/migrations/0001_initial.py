import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Record",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("title", models.CharField(max_length=200)),
                ("body", models.TextField(blank=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.CreateModel(
            name="Report",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("status", models.CharField(default="queued", max_length=10)),
                ("error", models.TextField(blank=True)),
                ("pdf", models.BinaryField(null=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("record", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="reports.record")),
            ],
        ),
    ]
