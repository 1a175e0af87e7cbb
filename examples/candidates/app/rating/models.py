from django.db import models


class Candidate(models.Model):
    """A transient candidate from the observations; its image is a FITS file in media/."""

    name = models.CharField(max_length=64, unique=True)
    image = models.CharField(max_length=200)

    def score(self):
        return self.rating_set.aggregate(models.Avg("score"))["score__avg"]


class Rating(models.Model):
    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE)
    score = models.PositiveSmallIntegerField()
    created = models.DateTimeField(auto_now_add=True)
