"""A caller's JSON Schema read without running it: shape, regexes and references.

Everything here is iterative (no recursion on the caller's shapes) and pure.
``json_shape`` measures any JSON value (depth, property count) and collects
the regexes a schema holds, so the request guard can refuse an oversized
request before any per-schema work. ``check_references`` refuses what would
make validation loop or leave the schema: a ``$ref`` cycle that never steps
into the instance (``{"$ref": "#"}``), a chain of references longer than
``MAX_REF_CHAIN``, a reference that does not resolve, and any reference to a
document outside the schema (nothing is ever fetched).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from jsonschema_specifications import REGISTRY as META_SCHEMAS

__all__ = [
    "MAX_REF_CHAIN",
    "SchemaShape",
    "SchemaWalkError",
    "check_references",
    "json_depth",
    "json_shape",
    "subschemas",
]

# Keywords whose value is one subschema applied to the same instance, or a list of them.
SAME_INSTANCE = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else")
# Keywords whose value is one subschema applied to a part of the instance.
ONE = (
    "items",
    "additionalItems",
    "unevaluatedItems",
    "contains",
    "additionalProperties",
    "unevaluatedProperties",
    "propertyNames",
)
# Keywords whose value maps names to subschemas.
MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
LISTS = ("prefixItems",)
# Keywords holding several subschemas, each about a millisecond of metaschema checking.
_COUNTED = (
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
    "allOf",
    "anyOf",
    "oneOf",
    "prefixItems",
)
# The longest run of references (and allOf/anyOf/...) on one instance level: each link is a
# few Python frames of validation, so a few hundred would exhaust the interpreter's stack.
MAX_REF_CHAIN = 64


class SchemaWalkError(ValueError):
    """The schema cannot be used; ``path`` names where (keys and indexes from its root)."""

    def __init__(self, message: str, path: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


@dataclass(slots=True)
class SchemaShape:
    """What ``json_shape`` measured: deepest nesting, properties, regexes with their paths."""

    depth: int = 0
    properties: int = 0
    patterns: list[tuple[tuple[Any, ...], str]] = field(default_factory=list)


def json_depth(value: Any, limit: int) -> int:
    """How deeply ``value``'s arrays and objects nest; stops counting past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > limit:
            return depth
        stack.extend((child, depth + 1) for child in children)
    return deepest


def json_shape(value: Any, depth_limit: int) -> SchemaShape:
    """Depth, property definitions and regexes anywhere in ``value`` (stops past the limit).

    Counted generically, wherever the keys appear: the entries of
    ``properties`` and of the other keywords holding several subschemas
    (``anyOf``, ``$defs``...), ``pattern`` strings and ``patternProperties`` keys.
    """
    shape = SchemaShape()
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            pairs: Any = item.items()
        elif isinstance(item, list):
            pairs = enumerate(item)
        else:
            continue
        shape.depth = max(shape.depth, len(path) + 1)
        if len(path) >= depth_limit:
            return shape
        if isinstance(item, dict):
            for key in _COUNTED:
                if isinstance(item.get(key), dict | list):
                    shape.properties += len(item[key])
            if isinstance(item.get("pattern"), str):
                shape.patterns.append(((*path, "pattern"), item["pattern"]))
            if isinstance(item.get("patternProperties"), dict):
                base = (*path, "patternProperties")
                shape.patterns.extend(((*base, key), key) for key in item["patternProperties"])
        stack.extend((child, (*path, key)) for key, child in pairs)
    return shape


def subschemas(schema: Any) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every (path, subschema object) of ``schema``, the root first."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(schema, ())]
    while stack:
        node, path = stack.pop()
        if not isinstance(node, dict):
            continue
        yield path, node
        for key in (*SAME_INSTANCE, *ONE, *LISTS):
            child = node.get(key)
            if isinstance(child, list):
                stack.extend((c, (*path, key, i)) for i, c in enumerate(child))
            elif child is not None:
                stack.append((child, (*path, key)))
        for key in MAPS:
            child = node.get(key)
            if isinstance(child, dict):
                stack.extend((c, (*path, key, name)) for name, c in child.items())


def _pointer(root: Any, fragment: str, where: tuple[Any, ...]) -> tuple[Any, ...]:
    """The path a ``#/a/b`` fragment names in ``root``; raises when it names nothing."""
    node, path = root, tuple[Any, ...]()
    for raw in fragment.split("/")[1:] if fragment else ():
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            key: Any = int(part)
        elif isinstance(node, dict) and part in node:
            key = part
        else:
            raise SchemaWalkError(f"'$ref' {'#' + fragment!r} does not resolve.", where)
        node, path = node[key], (*path, key)
    return path


def _targets(schema: dict[str, Any]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Each reference's own path -> the path of the subschema it names (metaschemas: none)."""
    anchors: dict[str, tuple[Any, ...]] = {}
    ids: dict[str, tuple[Any, ...]] = {}
    nodes = list(subschemas(schema))
    for path, node in nodes:
        for key in ("$anchor", "$dynamicAnchor"):
            if isinstance(node.get(key), str):
                anchors.setdefault(node[key], path)
        if isinstance(node.get("$id"), str):
            ids[node["$id"].rstrip("#")] = path
    targets: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for path, node in nodes:
        for key in ("$ref", "$dynamicRef", "$recursiveRef"):
            ref = node.get(key)
            if not isinstance(ref, str):
                continue
            where = (*path, key)
            base, _, fragment = ref.partition("#")
            if base and base in ids:
                start = ids[base]
            elif base and base in META_SCHEMAS:
                continue
            elif base:
                raise SchemaWalkError(
                    f"'{key}' {ref!r} points outside this schema; only references within "
                    "the schema (such as '#/$defs/name') are followed, nothing is fetched.",
                    where,
                )
            else:
                start = ()
            if fragment and not fragment.startswith("/"):
                if fragment not in anchors:
                    raise SchemaWalkError(f"'{key}' {ref!r} names no anchor.", where)
                targets[where] = anchors[fragment]
                continue
            scope: Any = schema
            for part in start:
                scope = scope[part]
            targets[where] = (*start, *_pointer(scope, fragment, where))
    known = {path for path, _ in nodes}
    for where, target in targets.items():
        if target not in known:
            raise SchemaWalkError(
                f"'{where[-1]}' must point at a subschema (under '$defs', 'definitions', "
                "'properties', 'items', ...), not into other data.",
                where,
            )
    return targets


def check_references(schema: Any) -> None:
    """Refuse unresolvable, outside and looping references (see the module docstring).

    Raises:
        SchemaWalkError: naming the first bad reference's path.
    """
    if not isinstance(schema, dict):
        return
    targets = _targets(schema)
    if not targets:
        return
    # Edges between subschemas applied to the same instance; a cycle never terminates.
    edges: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for path, node in subschemas(schema):
        out = edges.setdefault(path, [])
        for key in ("$ref", "$dynamicRef", "$recursiveRef"):
            if (*path, key) in targets:
                out.append(targets[(*path, key)])
        for key in SAME_INSTANCE:
            child = node.get(key)
            if isinstance(child, list):
                out.extend((*path, key, i) for i in range(len(child)))
            elif isinstance(child, dict):
                out.append((*path, key))
        if isinstance(node.get("dependentSchemas"), dict):
            out.extend((*path, "dependentSchemas", name) for name in node["dependentSchemas"])
    longest: dict[tuple[Any, ...], int] = {}
    for start in edges:
        _longest_chain(start, edges, longest)


def _longest_chain(
    start: tuple[Any, ...],
    edges: dict[tuple[Any, ...], list[tuple[Any, ...]]],
    longest: dict[tuple[Any, ...], int],
) -> None:
    """Depth first, iteratively: fill ``longest`` below ``start``; raise on a cycle or long run."""
    if start in longest:
        return
    on_path: set[tuple[Any, ...]] = {start}
    stack: list[tuple[tuple[Any, ...], Iterator[tuple[Any, ...]]]] = [
        (start, iter(edges.get(start, ())))
    ]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            on_path.discard(node)
            longest[node] = 1 + max((longest.get(c, 0) for c in edges.get(node, ())), default=0)
            if longest[node] > MAX_REF_CHAIN:
                raise SchemaWalkError(
                    f"References and allOf/anyOf/oneOf chain more than {MAX_REF_CHAIN} "
                    "subschemas on one level of the value.",
                    node,
                )
            continue
        if child in on_path:
            raise SchemaWalkError(
                "'$ref' loop: this subschema refers back to itself without stepping into "
                "a property or item of the value, so validation would never end.",
                child,
            )
        if child not in longest and child in edges:
            on_path.add(child)
            stack.append((child, iter(edges[child])))
