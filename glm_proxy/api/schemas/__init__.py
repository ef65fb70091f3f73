"""Request schemas (marshmallow), one module per endpoint family.

``base`` holds what they share: the lenient base class (unknown fields dropped)
and ``load``, which turns the first validation error into one 400 naming its
``param``.
"""
