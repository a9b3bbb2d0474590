"""Celery app and tasks: media-node allocation and housekeeping."""
