"""Cosmos DiffusionRenderer inference: de-lighting (inverse) and re-lighting (forward) of images and videos."""
