"""Predicting new photos with a project's model, and exporting labels."""
