"""The HTTP serving layer under the app: gunicorn's worker with its protective bounds."""
