# glm-proxy image: gunicorn with gevent workers, as in Procfile and render.yaml.
#
#   docker build -t glm-proxy .
#   docker run --rm -p 8000:8000 glm-proxy
#
# BASE_IMAGE exists for machines that cannot pull from Docker Hub: any Debian-like image
# with Python 3.11 (python3 + the venv module) works, e.g. one built with debootstrap.
ARG BASE_IMAGE=python:3.11-slim

# -- build stage: a virtualenv with requirements.txt; compilers and caches stay here ------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-input -r /tmp/requirements.txt \
    && /opt/venv/bin/pip check

# -- final stage: the interpreter, the virtualenv, the code, and nothing else -------------
FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8000
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Owned by root and not writable by the app user: the code is not the app's to change.
COPY . /app
# DATA_DIR (./data): the only directory the app writes (the conversation journal of a
# single-instance setup). Mount a volume here to keep it across container replacements.
RUN mkdir -p /app/data && chown app:app /app/data
USER app:app
EXPOSE 8000
# No curl in the slim image: ask /healthz with the standard library (503 fails too).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)" || exit 1
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
