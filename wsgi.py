"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``.

gunicorn's gevent worker monkey-patches before this module is imported, so
every socket the app creates (requests, redis) cooperates with gevent.
"""

from glm_proxy import create_app

app = create_app()
