import django.db.models.deletion
from django.db import migrations, models


def seed(apps, schema_editor):
    Candidate = apps.get_model("rating", "Candidate")
    for name in ("AT2026abc", "AT2026xyz"):
        Candidate.objects.get_or_create(name=name, image=f"candidates/{name}.fits")


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Candidate",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=64, unique=True)),
                ("image", models.CharField(max_length=200)),
            ],
        ),
        migrations.CreateModel(
            name="Rating",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("score", models.PositiveSmallIntegerField()),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("candidate", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="rating.candidate")),
            ],
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
