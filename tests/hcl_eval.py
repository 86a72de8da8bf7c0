"""Evaluates the few Terraform expressions infra/ tests need: validation conditions, for-expressions.

terraform cannot run here without its providers, so `terraform console` is not available. python-hcl2
parses infra/ but leaves every expression as text ("${...}"); this module evaluates that text for the
subset infra/ writes: literals, templates, var./local./each. references, attribute and index access,
the arithmetic, comparison and logical operators, the conditional, [for ...] and {for ...}
expressions (with `if` and grouping `...`), and the Terraform functions listed in FUNCTIONS. As in
Terraform, can() and try() are lazy: an error in their argument is a value, not a failure. Anything
outside the subset raises HclError, so a test never passes on an expression it did not understand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, ClassVar


class HclError(Exception):
    """An expression outside the subset, or one that fails (as Terraform's would)."""


Env = dict[str, Any]
Node = Callable[[Env], Any]

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_-]*)|(?P<op>\.\.\.|=>|==|!=|>=|<=|&&|\|\||[-+*/%<>!?:()\[\]{},.=])|(?P<string>\"))"
)


def _regex(pattern: str, text: str) -> Any:
    found = re.search(pattern, text)
    if found is None:
        raise HclError(f"regex {pattern!r} does not match {text!r}")
    return found.group(0) if not found.groups() else list(found.groups())


def _element(items: list, index: int) -> Any:
    if not items:
        raise HclError("element() of an empty list")
    return items[int(index) % len(items)]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value is None or isinstance(value, (list, dict)):
        raise HclError(f"cannot put {value!r} in a string")
    return str(value)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "regex": _regex,
    "length": len,
    "floor": math.floor,
    "alltrue": lambda items: all(items),
    "anytrue": lambda items: any(items),
    "contains": lambda items, value: value in items,
    "startswith": lambda text, prefix: text.startswith(prefix),
    "endswith": lambda text, suffix: text.endswith(suffix),
    "split": lambda sep, text: text.split(sep),
    "join": lambda sep, items: sep.join(items),
    "reverse": lambda items: list(reversed(items)),
    "element": _element,
    "tostring": _text,
    "lower": str.lower,
}


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.at = 0

    # -- tokens --------------------------------------------------------------------------------

    def _peek(self) -> tuple[str, str] | None:
        match = _TOKEN.match(self.source, self.at)
        if not match or match.end() == match.start():
            rest = self.source[self.at :].strip()
            if rest:
                raise HclError(f"cannot read {rest[:30]!r}")
            return None
        kind = match.lastgroup
        return kind, match.group(kind)

    def _next(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise HclError("unexpected end of expression")
        self.at = _TOKEN.match(self.source, self.at).end()
        return token

    def _is(self, *ops: str) -> bool:
        token = self._peek()
        return token is not None and token[0] in ("op", "name") and token[1] in ops

    def _expect(self, op: str) -> None:
        token = self._next()
        if token[1] != op:
            raise HclError(f"expected {op!r}, found {token[1]!r}")

    # -- grammar (Terraform's operator precedence) ----------------------------------------------

    def expression(self) -> Node:
        condition = self._binary(0)
        if not self._is("?"):
            return condition
        self._next()
        then = self.expression()
        self._expect(":")
        otherwise = self.expression()
        return lambda env: then(env) if _truth(condition(env)) else otherwise(env)

    _LEVELS = (("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "%"))
    _OPERATORS: ClassVar[dict[str, Callable[[Any, Any], Any]]] = {
        "||": lambda a, b: _truth(a) or _truth(b),
        "&&": lambda a, b: _truth(a) and _truth(b),
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b,
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "/": lambda a, b: a / b,
        "%": lambda a, b: a % b,
    }

    def _binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        while self._is(*self._LEVELS[level]):
            op = self._OPERATORS[self._next()[1]]
            right = self._binary(level + 1)
            # Both operands, as Terraform before 1.12 (versions.tf allows 1.7) does: no short circuit.
            left = (lambda f, a, b: lambda env: f(a(env), b(env)))(op, left, right)
        return left

    def _unary(self) -> Node:
        if self._is("!"):
            self._next()
            operand = self._unary()
            return lambda env: not _truth(operand(env))
        if self._is("-"):
            self._next()
            operand = self._unary()
            return lambda env: -operand(env)
        return self._postfix(self._primary())

    def _postfix(self, node: Node) -> Node:
        while True:
            if self._is("."):
                self._next()
                kind, name = self._next()
                node = (lambda n, k: lambda env: _index(n(env), k))(node, int(name) if kind == "number" else name)
            elif self._is("["):
                self._next()
                key = self.expression()
                self._expect("]")
                node = (lambda n, k: lambda env: _index(n(env), k(env)))(node, key)
            else:
                return node

    def _primary(self) -> Node:
        kind, text = self._next()
        if kind == "number":
            value = float(text) if "." in text else int(text)
            return lambda env: value
        if kind == "string":
            return self._template()
        if kind == "name":
            if text in ("true", "false", "null"):
                value = {"true": True, "false": False, "null": None}[text]
                return lambda env: value
            if self._is("("):
                return self._call(text)
            return lambda env: _lookup(env, text)
        if text == "(":
            inner = self.expression()
            self._expect(")")
            return inner
        if text == "[":
            return self._for_list() if self._is("for") else self._sequence("]", list)
        if text == "{":
            return self._for_map() if self._is("for") else self._object()
        raise HclError(f"unexpected {text!r}")

    def _call(self, name: str) -> Node:
        self._next()  # (
        arguments = self._items(")")
        if name == "can":
            [argument] = arguments
            return lambda env: _can(argument, env)
        if name == "try":
            return lambda env: _try(arguments, env)
        if name not in FUNCTIONS:
            raise HclError(f"function {name}() is outside the subset")
        function = FUNCTIONS[name]
        return lambda env: function(*(a(env) for a in arguments))

    def _items(self, closing: str) -> list[Node]:
        items: list[Node] = []
        while not self._is(closing):
            items.append(self.expression())
            if not self._is(closing):
                self._expect(",")
        self._next()
        return items

    def _sequence(self, closing: str, build: Callable) -> Node:
        items = self._items(closing)
        return lambda env: build(item(env) for item in items)

    def _object(self) -> Node:
        pairs: list[tuple[Node, Node]] = []
        while not self._is("}"):
            key = self.expression()
            self._expect("=")
            pairs.append((key, self.expression()))
            if self._is(","):
                self._next()
        self._next()
        return lambda env: {_key(k, env): v(env) for k, v in pairs}

    def _for_head(self) -> tuple[list[str], Node]:
        self._next()  # for
        names = [self._next()[1]]
        if self._is(","):
            self._next()
            names.append(self._next()[1])
        self._expect("in")
        collection = self.expression()
        self._expect(":")
        return names, collection

    def _for_tail(self, closing: str) -> Node | None:
        condition = None
        if self._is("if"):
            self._next()
            condition = self.expression()
        self._expect(closing)
        return condition

    def _for_list(self) -> Node:
        names, collection = self._for_head()
        value = self.expression()
        condition = self._for_tail("]")
        return lambda env: [value(scope) for scope in _iterate(names, collection(env), env, condition)]

    def _for_map(self) -> Node:
        names, collection = self._for_head()
        key = self.expression()
        self._expect("=>")
        value = self.expression()
        grouping = self._is("...")
        if grouping:
            self._next()
        condition = self._for_tail("}")

        def build(env: Env) -> dict:
            result: dict = {}
            for scope in _iterate(names, collection(env), env, condition):
                name = _text(key(scope))
                if grouping:
                    result.setdefault(name, []).append(value(scope))
                elif name in result:
                    raise HclError(f"duplicate key {name!r} (Terraform asks for grouping with ...)")
                else:
                    result[name] = value(scope)
            return result

        return build

    def _template(self) -> Node:
        """A quoted string, its ${...} interpolations evaluated (the opening quote already read)."""
        parts: list[Node] = []
        literal = []
        source = self.source
        while True:
            if self.at >= len(source):
                raise HclError("unterminated string")
            char = source[self.at]
            if char == '"':
                self.at += 1
                break
            if char == "\\":
                escaped = source[self.at + 1]
                literal.append({"n": "\n", "t": "\t"}.get(escaped, escaped))
                self.at += 2
            elif source.startswith("${", self.at):
                text = "".join(literal)
                parts.append(lambda env, text=text: text)
                literal = []
                self.at += 2
                inner = self.expression()
                self._expect("}")
                parts.append(inner)
            else:
                literal.append(char)
                self.at += 1
        text = "".join(literal)
        parts.append(lambda env: text)
        if len(parts) == 3 and not parts[0]({}) and not parts[2]({}):
            return parts[1]  # "${x}" is x itself, of whatever type
        return lambda env: "".join(_text(part(env)) for part in parts)


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise HclError(f"a bool is required, not {value!r}")
    return value


def _key(node: Node, env: Env) -> str:
    return _text(node(env))


def _index(value: Any, key: Any) -> Any:
    try:
        return value[key]
    except (KeyError, IndexError, TypeError) as error:
        raise HclError(f"no {key!r} in {value!r}") from error


def _lookup(env: Env, name: str) -> Any:
    if name not in env:
        raise HclError(f"unknown name {name!r}")
    return env[name]


def _iterate(names: list[str], collection: Any, env: Env, condition: Node | None):
    pairs = collection.items() if isinstance(collection, dict) else enumerate(collection)
    for key, value in pairs:
        scope = dict(env, **({names[0]: value} if len(names) == 1 else {names[0]: key, names[1]: value}))
        if condition is None or _truth(condition(scope)):
            yield scope


def _can(argument: Node, env: Env) -> bool:
    try:
        argument(env)
    except (HclError, TypeError, ValueError, ArithmeticError):
        return False
    return True


def _try(arguments: list[Node], env: Env) -> Any:
    for argument in arguments:
        try:
            return argument(env)
        except (HclError, TypeError, ValueError, ArithmeticError):
            continue
    raise HclError("no argument of try() could be evaluated")


def evaluate(expression: str, env: Env) -> Any:
    """The value of one python-hcl2 expression ("${...}"), with names (var, local, each...) from env."""
    source = expression[2:-1] if expression.startswith("${") and expression.endswith("}") else expression
    parser = _Parser(source)
    node = parser.expression()
    if parser._peek() is not None:
        raise HclError(f"unread rest: {source[parser.at :]!r}")
    return node(env)
