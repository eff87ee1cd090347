"""Reading a search-space file within bounds: its size, depth, aliases and keys.

Space files may come from others, so reading one is bounded: a file holds at most
`MAX_FILE_BYTES` (1 MB), UTF-8 text; it nests at most `MAX_DEPTH` (16) levels; a YAML
file expands to at most `MAX_NODES` (10,000) values, each use of an alias counting its
whole anchor again (a "billion laughs" file is refused before it expands); a key given
twice in one mapping is refused, by name; and a value quoted in an error message is cut
to `MAX_SHOWN` (200) characters (`show`, `cut`).

`read_space_file` returns the file's contents as plain Python values; `kfound.tuning.space`
checks what they mean.
"""

import json
import os
import re
import reprlib

import yaml

MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 16
MAX_NODES = 10_000
MAX_SHOWN = 200


class _Refused(ValueError):
    """A space file that breaks one of the bounds, found while reading it."""


class _YAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded (`MAX_DEPTH`, `MAX_NODES`), refusing duplicate keys.

    PyYAML reads `1e-3` as a string (YAML 1.1); it is read as a float, as YAML 1.2 does.
    """

    # The scanner's work grows with the square of the nesting: bound it there.
    def fetch_flow_collection_start(self, TokenClass):
        super().fetch_flow_collection_start(TokenClass)
        self._check_nesting()

    def add_indent(self, column):
        added = super().add_indent(column)
        self._check_nesting()
        return added

    def _check_nesting(self):
        if self.flow_level + len(self.indents) > MAX_DEPTH:
            raise _Refused(f"it nests deeper than {MAX_DEPTH} levels (space_file.MAX_DEPTH)")

    def construct_document(self, node):
        _count_nodes(node, {}, depth=0)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # An unhashable key: PyYAML's own error follows.
                    continue
                if duplicate:
                    raise _Refused(f"the key {show(key)} is given twice in one mapping "
                                   f"(line {key_node.start_mark.line + 1})")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)$""", re.X),
    list("-+0123456789"),
)


def _count_nodes(node, counted, depth):
    """The number of values `node` expands to, each alias counted in full; bounded."""
    if id(node) in counted:
        return counted[id(node)]
    if depth > MAX_DEPTH:
        raise _Refused(f"it nests deeper than {MAX_DEPTH} levels (space_file.MAX_DEPTH)")
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        children = []
    total = 1 + sum(_count_nodes(child, counted, depth + 1) for child in children)
    if total > MAX_NODES:
        raise _Refused(f"it expands to more than {MAX_NODES:,} values (space_file.MAX_NODES; "
                       "each use of an alias counts its anchor's values again)")
    counted[id(node)] = total
    return total


def _json_mapping(pairs):
    keys = set()
    for key, _ in pairs:
        if key in keys:
            raise _Refused(f"the key {show(key)} is given twice in one mapping")
        keys.add(key)
    return dict(pairs)


def _check_depth(value):
    """Refuses a value nested deeper than `MAX_DEPTH`; iterative, so any depth is safe."""
    stack = [(value, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Refused(f"it nests deeper than {MAX_DEPTH} levels (space_file.MAX_DEPTH)")
        children = value.values() if isinstance(value, dict) else (
            value if isinstance(value, list) else ())
        stack.extend((child, depth + 1) for child in children)


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist = 3, 8, 8
_SHORT.maxstring = _SHORT.maxother = 80


def show(value):
    """`repr(value)`, cut to at most `MAX_SHOWN` characters, for error messages."""
    text = _SHORT.repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


def cut(text):
    text = str(text)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


def read_space_file(path):
    """Reads a search-space file (`.yaml`, `.yml` or `.json`) within the bounds.

    Args:
        path: the file's path.

    Returns:
        The file's contents: dicts, lists and scalars, as JSON or PyYAML's safe loader
        gives them (YAML's `1e-3` is a float).

    Raises:
        ValueError: the file is missing, unreadable, malformed or beyond the bounds
            (`MAX_FILE_BYTES`, `MAX_DEPTH`, `MAX_NODES`, a duplicate key). The message
            names the file and the problem.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".yaml", ".yml", ".json"):
        raise ValueError(
            "Argument `space` must be a .yaml, .yml or .json file. "
            f"Received: space={path!r}"
        )
    if not os.path.isfile(path):
        raise ValueError(f"Argument `space` must be an existing file. Received: space={path!r}")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(
            f"{path}: a space file holds at most {MAX_FILE_BYTES:,} bytes "
            f"(space_file.MAX_FILE_BYTES); this one holds {os.path.getsize(path):,}. "
            f"Received: space={path!r}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: a space file must be UTF-8 text; byte 0x{data[e.start]:02x} at offset "
            f"{e.start} is not. Received: space={path!r}"
        ) from None
    kind = ext[1:].upper().replace("YML", "YAML")
    try:
        if ext == ".json":
            config = json.loads(text, object_pairs_hook=_json_mapping)
            _check_depth(config)
        else:
            config = yaml.load(text, Loader=_YAMLLoader)
    except RecursionError:
        raise ValueError(
            f"{path}: the file is refused: it nests deeper than {MAX_DEPTH} levels "
            f"(space_file.MAX_DEPTH). Received: space={path!r}"
        ) from None
    except _Refused as e:
        raise ValueError(f"{path}: the file is refused: {e}. Received: space={path!r}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(
            f"{path}: the file is not valid {kind}: {cut(e)}. Received: space={path!r}"
        ) from None
    return config


