"""``python -m glm_proxy.config``: print the README configuration table."""

from glm_proxy.config.table import markdown_table

print(markdown_table())
