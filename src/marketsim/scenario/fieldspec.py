"""The vocabulary the file formats are declared in (:mod:`marketsim.schema` declares them with it).

A :class:`Field` is one value; a :class:`Block` a mapping with known keys; a :class:`MapOf` a mapping whose keys
the file chooses; a :class:`ListOf` a list; a :class:`Variants` a mapping whose tag key picks its other fields
(event types, network models). The validator, the JSON Schema and the field reference all read these objects:
the validator takes every check of one value or one container from them (type, range, choices, pattern, kind of
container, non-empty, at most ``max_items``, the tag, keys unknown, required or duplicated by ``merge_key``).

Pure data: it imports nothing from the rest of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

#: The unit of utilities (a field's ``unit``).
UTILITY = "utility"

_N = TypeVar("_N", "Field", "Block", "MapOf", "ListOf", "Variants")  # a kind of node (:func:`expect`)


@dataclass(frozen=True)
class Field:
    """One value in a file.

    ``type`` is ``number``, ``integer``, ``string``, ``name`` (a letter, then letters, digits or _), ``date``
    (YYYY-MM-DD), ``period`` (2012, 2013H1, 2012Q3 or {start, end}), ``date_or_step``, ``names`` (a list of
    names), ``pair`` ([lo, hi]), ``list`` (a list of anything), ``strings`` (a list of strings) or
    ``all_or_strings`` ('all' or a list of strings). ``refers`` names what a string must be one of in the
    file itself (``provider``, ``retailer``, ``event``, ``source``): the validator knows those names, the
    JSON Schema cannot. ``default`` is used when the key is absent (or null where ``nullable``);
    ``default_text`` says it in words where it is not a constant; ``source`` says where the default comes
    from. ``uncertain``: the number may be a range or prior mapping; ``series``: a mapping of dates to
    numbers; ``calibrate``: the word 'calibrate' (fit it) instead of a number."""

    key: str
    type: str
    doc: str
    unit: str = ""
    required: bool = False
    default: Any = None
    default_text: str = ""
    source: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] = ()
    what: str = "value"  # the noun in "unknown <what> 'x'"
    refers: str = ""
    extra_choices: tuple[str, ...] = ()  # allowed besides the referred names (audience: 'everyone')
    uncertain: bool = False
    series: bool = False
    calibrate: bool = False
    nullable: bool = False
    pattern: str = ""
    file_only: bool = False  # read before validation (``base``): in the JSON Schema and docs, not the validator
    only_if: tuple[str, str] | None = None  # allowed only when the sibling key has this value: ("kind", "platform")
    multiple_of: int | None = None
    hint: str = ""  # shown with a multiple_of error (the reason) or a pattern error (what the pattern allows)


@dataclass(frozen=True)
class Block:
    """A mapping with known keys (``calendar``, one retailer, ...)."""

    key: str
    doc: str
    fields: tuple[Node, ...]
    required: bool = False
    nullable: bool = False
    default_text: str = ""
    one_of: tuple[tuple[str, ...], ...] = ()  # groups of keys of which exactly one must be given

    def __getitem__(self, key: str) -> Node:
        for f in self.fields:
            if f.key == key:
                return f
        raise KeyError(key)

    def __contains__(self, key: str) -> bool:
        return any(f.key == key for f in self.fields)

    def field(self, key: str) -> Field:
        """``self[key]``, which the code reading it takes for one value (:func:`expect`)."""
        return expect(self[key], Field)

    def at(self, key: str, kind: type[_N]) -> _N:
        """``self[key]`` as the kind of node the code reading it takes it for (:func:`expect`)."""
        return expect(self[key], kind)

    @property
    def plain_fields(self) -> tuple[Field, ...]:
        """:attr:`fields` of a block of plain values only (uncertain, a network model's parameters)."""
        return tuple(expect(f, Field) for f in self.fields)

    @property
    def checked(self) -> tuple[Node, ...]:
        """The fields the validator sees (without file-only keys such as ``base``)."""
        return tuple(f for f in self.fields if not getattr(f, "file_only", False))

    @property
    def required_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.checked if f.required)

    @property
    def optional_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.checked if not f.required)


@dataclass(frozen=True)
class MapOf:
    """A mapping whose keys are names the file chooses (providers, sso_share, shares), each to ``value``."""

    key: str
    doc: str
    keys: str  # "name" | "provider" | "retailer" (names of the file's own providers or retailers)
    value: Node
    required: bool = False
    nullable: bool = False
    min_items: int = 0  # 1: non-empty
    max_items: int | None = None
    default_text: str = ""
    source: str = ""
    what: str = ""  # the words after "expected a mapping": "provider -> share"


@dataclass(frozen=True)
class ListOf:
    """A list of ``item``. ``merge_key``: a file with ``base:`` merges this list into its base's item by item
    by that key (``{<key>: X, remove: true}`` removes an item); other lists replace the base's."""

    key: str
    doc: str
    item: Node
    required: bool = False
    nullable: bool = False
    min_items: int = 0  # 1: non-empty
    max_items: int | None = None
    merge_key: str | None = None  # also unique among the items
    default_text: str = ""
    what: str = ""  # the words after "expected a list of" (default: the key)


@dataclass(frozen=True)
class Variants:
    """A mapping whose ``tag`` key (``type``, ``model``) picks its other fields: ``common`` to all, plus those of
    ``variants[tag]``."""

    key: str
    doc: str
    tag: str
    tag_doc: str
    what: str  # noun for the tag's values: "event type", "network model"
    variants: dict[str, Block]
    common: tuple[Field, ...] = ()
    required: bool = False
    nullable: bool = False
    default_text: str = ""
    one_of: tuple[tuple[str, ...], ...] = ()  # groups of keys of which exactly one must be given

    def block(self, tag: str) -> Block:
        """The full block of one variant: the tag, the common fields, then the variant's own."""
        v = self.variants[tag]
        tag_field = Field(self.tag, "string", self.tag_doc, required=True, choices=tuple(self.variants), what=self.what)
        req = [f for f in v.fields if f.required]
        opt = [f for f in v.fields if not f.required]
        return Block(tag, v.doc, (tag_field, *req, *self.common, *opt))


Node = Field | Block | MapOf | ListOf | Variants


def expect(node: Node, kind: type[_N]) -> _N:
    """``node`` as the kind of node the code reading it takes it for: a TypeError naming both if the format
    declares another kind there (a slip in the declarations, never in a file)."""
    if not isinstance(node, kind):
        raise TypeError(f"{node.key!r} is declared as a {type(node).__name__}; the code reads it as a {kind.__name__}")
    return node
