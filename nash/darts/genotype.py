"""Genotypes: derived cells, printed and parsed in each space's reference format.

`Genotype` is a DARTS cell pair; `NB201Genotype` a NAS-Bench-201 cell
(`|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|`,
see its doc). `get_genotype` reads either from a name, text, JSON or a file.

DARTS:

    Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[('max_pool_3x3', 0), ...], reduce_concat=[2, 3, 4, 5])

Two (op, input) pairs per intermediate node, in node order; inputs 0 and 1 are the cell's
inputs (the outputs of the two previous cells), input k >= 2 is intermediate node k. The text
is parsed as a syntax tree and only literals are accepted (plus `range(a, b)`, which the
reference's search prints for the concat lists), so reading a genotype never runs code.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import NamedTuple

from .ops import DARTS_SPACE, NB201_SPACE, SearchSpace
from nash.errors import NashError

FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


class GenotypeError(NashError, ValueError):
    """A genotype that cannot be read or does not describe a valid cell (one line)."""


class Genotype(NamedTuple):
    normal: list
    normal_concat: list
    reduce: list
    reduce_concat: list

    def __repr__(self) -> str:
        # always lists of (str, int) tuples and lists of ints, whatever was passed in, so the
        # text is the reference's format byte for byte
        def cell(pairs):
            return repr([(str(op), int(i)) for op, i in pairs])

        return (f"Genotype(normal={cell(self.normal)}, normal_concat={[int(i) for i in self.normal_concat]!r}, "
                f"reduce={cell(self.reduce)}, reduce_concat={[int(i) for i in self.reduce_concat]!r})")

    __str__ = __repr__

    # ------------------------------------------------------------------ reading and writing

    @classmethod
    def make(cls, normal, normal_concat, reduce, reduce_concat, space: SearchSpace = DARTS_SPACE) -> "Genotype":
        """A checked, normalised genotype (lists of (str, int) tuples, lists of ints)."""
        g = cls(_cell("normal", normal), _concat("normal_concat", normal_concat),
                _cell("reduce", reduce), _concat("reduce_concat", reduce_concat))
        g.check(space)
        return g

    @classmethod
    def parse(cls, text: str, space: SearchSpace = DARTS_SPACE) -> "Genotype":
        """Read the reference text format (`Genotype(normal=..., ...)`); keywords or positional."""
        if not isinstance(text, str):
            raise GenotypeError(f"genotype text must be a string, got {type(text).__name__}")
        src = text.strip()
        try:
            tree = ast.parse(src, mode="eval").body
        except SyntaxError as e:
            raise GenotypeError(f"genotype text is not valid syntax ({e.msg}, column {e.offset})") from None
        if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "Genotype"):
            raise GenotypeError("genotype text must look like Genotype(normal=[...], normal_concat=[...], "
                                "reduce=[...], reduce_concat=[...])")
        if len(tree.args) > len(FIELDS):
            raise GenotypeError(f"Genotype takes {len(FIELDS)} fields, got {len(tree.args)} positional values")
        values = {}
        for field, node in zip(FIELDS, tree.args):
            values[field] = _literal(field, node)
        for kw in tree.keywords:
            if kw.arg not in FIELDS:
                raise GenotypeError(f"unknown Genotype field {kw.arg!r} (fields: {', '.join(FIELDS)})")
            if kw.arg in values:
                raise GenotypeError(f"Genotype field {kw.arg!r} given twice")
            values[kw.arg] = _literal(kw.arg, kw.value)
        for field in ("normal", "reduce"):  # a wrong op is the more useful message: say it first
            if field in values:
                _check_pairs(field, _cell(field, values[field]), space)
        missing = [f for f in FIELDS if f not in values]
        if missing:
            raise GenotypeError(f"Genotype is missing field(s): {', '.join(missing)}")
        return cls.make(**values, space=space)

    def to_json(self) -> dict:
        return {"normal": [[op, int(i)] for op, i in self.normal], "normal_concat": [int(i) for i in self.normal_concat],
                "reduce": [[op, int(i)] for op, i in self.reduce], "reduce_concat": [int(i) for i in self.reduce_concat]}

    @classmethod
    def from_json(cls, data, space: SearchSpace = DARTS_SPACE) -> "Genotype":
        if not isinstance(data, dict):
            raise GenotypeError(f"genotype JSON must be an object with fields {', '.join(FIELDS)}")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise GenotypeError(f"unknown genotype field(s) in JSON: {', '.join(map(str, unknown))}")
        missing = [f for f in FIELDS if f not in data]
        if missing:
            raise GenotypeError(f"genotype JSON is missing field(s): {', '.join(missing)}")
        return cls.make(**data, space=space)

    # ------------------------------------------------------------------ facts

    def check(self, space: SearchSpace = DARTS_SPACE) -> None:
        """Raise GenotypeError unless every op is one of the space's (not 'none': a genotype
        lists the edges that exist) and every node reads only nodes before it."""
        for name in ("normal", "reduce"):
            pairs, concat = getattr(self, name), getattr(self, name + "_concat")
            _check_pairs(name, pairs, space)
            if not pairs or len(pairs) % 2:
                raise GenotypeError(f"{name}: needs two (op, input) pairs per intermediate node, got {len(pairs)} pairs")
            nodes = space.num_inputs + len(pairs) // 2
            if not concat:
                raise GenotypeError(f"{name}_concat: empty")
            for i in concat:
                if not 0 <= i < nodes:
                    raise GenotypeError(f"{name}_concat: node {i} does not exist (nodes 0..{nodes - 1})")
            if len(set(concat)) != len(concat):
                raise GenotypeError(f"{name}_concat: repeats a node: {list(concat)}")
            if name == "reduce" and any(i < space.num_inputs for i in concat):
                raise GenotypeError(f"reduce_concat: the cell inputs (nodes < {space.num_inputs}) keep their "
                                    f"resolution and cannot be concatenated with the reduced nodes")

    def steps(self, reduction: bool = False) -> int:
        return len(self.reduce if reduction else self.normal) // 2


def _check_pairs(name: str, pairs, space: SearchSpace) -> None:
    """Every op is one of the space's (not 'none': a genotype lists the edges that exist) and
    every pair reads a node before its own (pairs 2k and 2k+1 make node num_inputs + k)."""
    for k, (op, idx) in enumerate(pairs):
        node = space.num_inputs + k // 2
        if op == "none":
            raise GenotypeError(f"{name}[{k}]: 'none' means no edge and cannot be a chosen op")
        if op not in space.ops:
            known = ", ".join(o for o in space.ops if o != "none")
            raise GenotypeError(f"{name}[{k}]: unknown op {op!r} (known: {known})")
        if not 0 <= idx < node:
            raise GenotypeError(f"{name}[{k}]: input {idx} of node {node} must be in 0..{node - 1}")


def _literal(field: str, node):
    """A literal value, or range(a, b[, s]) with integer literals (the reference search's concat)."""
    if isinstance(node, ast.Call):
        if (isinstance(node.func, ast.Name) and node.func.id == "range" and not node.keywords
                and 1 <= len(node.args) <= 3):
            args = [_literal(field, a) for a in node.args]
            if all(type(a) is int for a in args):
                return list(range(*args))
        raise GenotypeError(f"{field}: only literals (and range(a, b)) are allowed, got a call")
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise GenotypeError(f"{field}: not a literal value") from None


def _cell(field: str, pairs) -> list:
    if not isinstance(pairs, (list, tuple)):
        raise GenotypeError(f"{field}: expected a list of (op, input) pairs, got {type(pairs).__name__}")
    out = []
    for k, pair in enumerate(pairs):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)
                and type(pair[1]) is int):
            raise GenotypeError(f"{field}[{k}]: expected an (op name, input index) pair, got {pair!r}")
        out.append((pair[0], pair[1]))
    return out


def _concat(field: str, nodes) -> list:
    if isinstance(nodes, range):
        nodes = list(nodes)
    if not isinstance(nodes, (list, tuple)) or not all(type(i) is int for i in nodes):
        raise GenotypeError(f"{field}: expected a list of node indices, got {nodes!r}")
    return list(nodes)


# The published cells, exact from the reference genotypes.py (DARTS = DARTS_V2 there too).
DARTS_V1 = Genotype.make(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    reduce_concat=[2, 3, 4, 5])
DARTS_V2 = Genotype.make(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5])

GENOTYPES: dict[str, Genotype] = {"DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2, "DARTS": DARTS_V2}


# ---------------------------------------------------------------------------------------------
# NAS-Bench-201


class NB201Genotype(NamedTuple):
    """A NAS-Bench-201 cell: for nodes 1, 2, 3, the (op, input node) of each incoming edge,
    inputs in order (node j reads every node i < j). Its text is the benchmark's arch string,
    nodes separated by `+`, each edge `op~input`:

        |nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|

    'none' is a valid op here (the edge contributes nothing): every one of the 5^6 = 15,625
    strings over the space's ops is a cell."""

    nodes: tuple  # ((op, 0),), ((op, 0), (op, 1)), ((op, 0), (op, 1), (op, 2))

    space = NB201_SPACE

    def __str__(self) -> str:
        return "+".join("|" + "|".join(f"{op}~{i}" for op, i in node) + "|" for node in self.nodes)

    def __repr__(self) -> str:
        return f"NB201Genotype({str(self)!r})"

    @classmethod
    def make(cls, nodes) -> "NB201Genotype":
        """A checked genotype from per-node lists of (op, input) pairs."""
        if not isinstance(nodes, (list, tuple)):
            raise GenotypeError(f"nb201 genotype: expected a list of nodes, got {type(nodes).__name__}")
        steps = NB201_SPACE.steps
        if len(nodes) != steps:
            raise GenotypeError(f"nb201 genotype: needs {steps} nodes, got {len(nodes)}")
        out = []
        for j, node in enumerate(nodes, start=1):
            if not isinstance(node, (list, tuple)) or len(node) != j:
                raise GenotypeError(f"nb201 genotype: node {j} needs {j} edge(s) (one from each of nodes 0..{j - 1}), "
                                    f"got {node!r}")
            edges = []
            for i, pair in enumerate(node):
                if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)
                        and type(pair[1]) is int):
                    raise GenotypeError(f"nb201 genotype: node {j}: expected an (op, input) pair, got {pair!r}")
                op, src = pair
                if op not in NB201_SPACE.ops:
                    raise GenotypeError(f"nb201 genotype: node {j}: unknown op {op!r} "
                                        f"(known: {', '.join(NB201_SPACE.ops)})")
                if src != i:
                    raise GenotypeError(f"nb201 genotype: node {j} must list its inputs in order 0..{j - 1}, "
                                        f"got input {src} in place {i}")
                edges.append((op, src))
            out.append(tuple(edges))
        return cls(tuple(out))

    @classmethod
    def parse(cls, text: str) -> "NB201Genotype":
        """Read the arch string (surrounding white space is ignored)."""
        if not isinstance(text, str):
            raise GenotypeError(f"nb201 genotype text must be a string, got {type(text).__name__}")
        src = text.strip()
        parts = src.split("+")
        nodes = []
        for j, part in enumerate(parts, start=1):
            if len(part) < 2 or not part.startswith("|") or not part.endswith("|"):
                raise GenotypeError(f"nb201 genotype: node {j} text {part!r} must look like |op~0|op~1|")
            edges = []
            for item in part[1:-1].split("|"):
                op, sep, idx = item.partition("~")
                if not sep or not idx.isdigit():
                    raise GenotypeError(f"nb201 genotype: node {j}: {item!r} must look like op~input")
                edges.append((op, int(idx)))
            nodes.append(edges)
        return cls.make(nodes)

    @classmethod
    def from_edges(cls, ops) -> "NB201Genotype":
        """From one op name per edge, in the alpha row order (1<-0, 2<-0, 2<-1, 3<-0, ...)."""
        ops = list(ops)
        if len(ops) != NB201_SPACE.num_edges:
            raise GenotypeError(f"nb201 genotype: needs {NB201_SPACE.num_edges} edge ops, got {len(ops)}")
        nodes = [[] for _ in range(NB201_SPACE.steps)]
        for op, (src, dst) in zip(ops, NB201_SPACE.edges):
            nodes[dst - 1].append((op, src))
        return cls.make(nodes)

    def edge_ops(self) -> list[str]:
        """One op name per edge, in the alpha row order."""
        return [op for node in self.nodes for op, _ in node]

    def to_json(self) -> dict:
        return {"space": "nb201", "arch": str(self)}

    @classmethod
    def from_json(cls, data) -> "NB201Genotype":
        if not (isinstance(data, dict) and data.get("space") == "nb201" and isinstance(data.get("arch"), str)):
            raise GenotypeError('nb201 genotype JSON must be {"space": "nb201", "arch": "|op~0|+..."}')
        return cls.parse(data["arch"])

    def check(self, space: SearchSpace = NB201_SPACE) -> None:
        type(self).make(self.nodes)


def genotype_space(genotype) -> SearchSpace:
    """The space a genotype belongs to."""
    return NB201_SPACE if isinstance(genotype, NB201Genotype) else DARTS_SPACE


def _from_json(data, space: SearchSpace):
    if isinstance(data, dict) and "space" in data:
        return NB201Genotype.from_json(data)
    return Genotype.from_json(data, space)


def _from_text(text: str, space: SearchSpace):
    if text.strip().startswith("|"):
        return NB201Genotype.parse(text)
    return Genotype.parse(text, space)


def get_genotype(spec, space: SearchSpace = DARTS_SPACE) -> Genotype | NB201Genotype:
    """A genotype from a published name ("DARTS_V2", any case), genotype text (DARTS
    `Genotype(...)` or a NAS-Bench-201 `|op~0|+...` string), a JSON object, or a path to a file
    holding either (genotype.txt / genotype.json of a search run). `space` checks DARTS
    genotypes; a NAS-Bench-201 genotype is recognised by its form."""
    if isinstance(spec, Genotype):
        spec.check(space)
        return spec
    if isinstance(spec, NB201Genotype):
        spec.check()
        return spec
    if isinstance(spec, dict):
        return _from_json(spec, space)
    if isinstance(spec, Path) or (isinstance(spec, str) and "(" not in spec and "{" not in spec
                                  and not spec.strip().startswith("|")
                                  and spec.strip().upper() not in GENOTYPES):
        path = Path(spec)
        if path.is_file():
            text = path.read_text()
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                return _from_text(text, space)
            return _from_json(data, space)
        raise GenotypeError(f"{spec!r} is not a published genotype ({', '.join(GENOTYPES)}), "
                            f"a genotype file, or genotype text")
    if not isinstance(spec, str):
        raise GenotypeError(f"cannot read a genotype from a {type(spec).__name__}")
    name = spec.strip().upper()
    if name in GENOTYPES:
        return GENOTYPES[name]
    if spec.strip().startswith("{"):
        try:
            return _from_json(json.loads(spec), space)
        except json.JSONDecodeError as e:
            raise GenotypeError(f"genotype JSON is not valid ({e.msg})") from None
    return _from_text(spec, space)
