"""Background jobs: one registry of job kinds, executed by Celery workers and by the embedded
in-process worker alike, and the queues that deliver them."""
