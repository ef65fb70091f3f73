"""HTTP plumbing shared by every blueprint: error handlers, request limits, gunicorn's refusals."""
