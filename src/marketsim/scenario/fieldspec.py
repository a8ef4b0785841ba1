"""The vocabulary the file formats are declared in (:mod:`marketsim.schema` declares them with it).

A :class:`Field` is one value; a :class:`Block` a mapping with known keys; a :class:`MapOf` a mapping whose keys
the file chooses; a :class:`ListOf` a list; a :class:`Variants` a mapping whose tag key picks its other fields
(event types, network models). The validator, the JSON Schema and the field reference all read these objects:
the validator takes every check of one value or one container from them (type, range, choices, pattern, kind of
container, non-empty, at most ``max_items``, the tag, keys unknown, required or duplicated by ``merge_key``).

Pure data: it imports nothing from the rest of the package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
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

    @property
    def fraction(self) -> bool:
        """A number written as a fraction of 1 (a share, a probability, a stake): see :func:`is_fraction`."""
        return self.type == "number" and is_fraction(self.lo, self.hi)


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


# --------------------------------------------------------------------------- what to write instead

_PERCENT = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*%\s*$")


def is_fraction(lo: float | None, hi: float | None) -> bool:
    """True when a number's allowed interval [lo, hi] lies within [0, 1]: it is a fraction of 1 (a share, a
    probability, a stake), never a percent. Every such field of every format is one (``_share`` in
    :mod:`marketsim.scenario.schema`, ``consumers.shopping_rate``, an equity stake, ...)."""
    return lo is not None and hi is not None and lo >= 0 and hi <= 1


def _decimal(text: str) -> str:
    """``text`` (a number) divided by 100, written exactly: '15' -> '0.15', '0.5' -> '0.005'."""
    d = Decimal(text).scaleb(-2).normalize()
    return format(d, "f")


def number_fix(x: Any, lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    """What to write instead of ``x`` where a number in [lo, hi] is expected, or "" if nothing better than the
    range can be said. A fraction of 1 (:func:`is_fraction`) given in percent, as ``15%``, ``15 %`` or a number
    above 1 whose hundredth fits (``15``): "write 0.15". A percent elsewhere: the number without '%'. A number
    in quotes: without the quotes."""
    frac = is_fraction(lo, hi)

    def fits(v: Decimal) -> bool:
        return (lo is None or (v > Decimal(str(lo)) if lo_open else v >= Decimal(str(lo)))) and (
            hi is None or v <= Decimal(str(hi))
        )

    if isinstance(x, str):
        if len(x) > 40:  # no number a file means; never echoed
            return ""
        m = _PERCENT.match(x)
        if m and frac:
            f = _decimal(m.group(1))
            if fits(Decimal(f)):
                return f"write {f} (a fraction of 1: {m.group(1)}% = {f})"
            return "write a fraction of 1, not a percent"
        if m:
            return "write a plain number, without '%'"
        try:
            v = Decimal(x.strip())
        except InvalidOperation:
            return ""
        if not v.is_finite():
            return ""
        inner = number_fix(float(v), lo, hi, lo_open)
        return f"write it without quotes{'; ' + inner if inner else f' ({x.strip()})'}"
    if frac and isinstance(x, (int, float)) and not isinstance(x, bool) and 1 < x <= 100:
        f = _decimal(repr(x))
        if fits(Decimal(f)):
            return f"it is a fraction of 1: for {x:g}% write {f}"
    return ""


def expect(node: Node, kind: type[_N]) -> _N:
    """``node`` as the kind of node the code reading it takes it for: a TypeError naming both if the format
    declares another kind there (a slip in the declarations, never in a file)."""
    if not isinstance(node, kind):
        raise TypeError(f"{node.key!r} is declared as a {type(node).__name__}; the code reads it as a {kind.__name__}")
    return node


def example(node: Node, name: str) -> str:
    """The shortest YAML (flow style) of ``node`` that a file could hold: a block with only its required fields, a
    name field (and a mapping's key) set to ``name``, a choice's first value, a fraction of 1 as 0.1, another
    number as its default or lowest value. Shown in messages that ask for a declaration ("add
    ``wechat: {penetration: 0.1}`` under providers:"): the values are placeholders, the keys are the format's."""
    if isinstance(node, Field):
        if node.type == "name":
            return name
        if node.choices:
            return str(node.choices[0])
        if node.type in ("number", "integer"):
            if isinstance(node.default, (int, float)) and not isinstance(node.default, bool):
                return f"{node.default:g}"
            return "0.1" if node.fraction else f"{node.lo or 0:g}"
        return {"names": "[]", "list": "[]", "strings": "[]", "boolean": "false"}.get(node.type, "...")
    if isinstance(node, Variants):
        return example(node.block(next(iter(node.variants))), name)
    if isinstance(node, Block):
        req = [f for f in node.checked if getattr(f, "required", False)]
        return "{" + ", ".join(f"{f.key}: {example(f, name)}" for f in req) + "}"
    if isinstance(node, MapOf):
        return f"{{{name}: {example(node.value, name)}}}"
    return f"[{example(node.item, name)}]"
