"""Customer templates rendered in Jinja2's sandbox: no attribute games, no file access,
and a work budget per render.

The sandbox alone stops attribute and file access but not work: a nested
``range(99999)`` loop or ``'x' * 10**9`` would pin a CPU or fill memory. Each render
therefore gets a ``Budget`` of steps: every loop iteration, every call, every KiB a
call, filter or operator produces and every KiB of output costs steps, and ``range`` costs
its length up front. Single operations that would blow up from small inputs (``*``,
``**``, ``%`` and ``format`` widths, ``center``/``ljust``/``replace`` ...) are checked before
they run; any value over ``MAX_OUTPUT_CHARS`` and an output over it stop the render. All
of these raise ``TemplateTooExpensive`` -> 422 ``template_too_expensive``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from api.errors import ApiError

MAX_STEPS = 200_000  # ~0.1-0.5 s of CPU on one core at most
MAX_OUTPUT_CHARS = 5_000_000  # per rendered part and per intermediate value
MAX_INT_BITS = 100_000
_LOOP = "__kibamail_loop"  # wraps every {% for %} iterable (see _budgeted)
_SIZED = "__kibamail_sized"  # wraps every ~ concatenation (see _budgeted)
_WIDE_FORMAT = re.compile(r"\d{7,}")  # a width or precision of a million or more


class TemplateTooExpensive(Exception):
    """The render used up its budget; ``steps`` says how far the counter got."""

    def __init__(self, reason: str, steps: int) -> None:
        super().__init__(reason)
        self.steps = steps


@dataclass
class Budget:
    steps: int = 0

    def charge(self, steps: int) -> None:
        self.steps += steps
        if self.steps > MAX_STEPS:
            raise TemplateTooExpensive(f"more than {MAX_STEPS} steps", self.steps)


_BUDGET: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


def _budget() -> Budget:
    budget = _BUDGET.get()
    return Budget() if budget is None else budget  # None: only render_template sets it


def _too_big(what: str) -> TemplateTooExpensive:
    return TemplateTooExpensive(what, _budget().steps)


def _sized(value: Any) -> Any:
    """Charge for a produced value and refuse one over the size limits."""
    if isinstance(value, str | bytes | list | tuple | dict):
        if len(value) > MAX_OUTPUT_CHARS:
            raise _too_big(f"a value longer than {MAX_OUTPUT_CHARS}")
        _budget().charge(1 + len(value) // 1024)
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _too_big(f"a number over {MAX_INT_BITS} bits")
    return value


def _check_width(*numbers: Any) -> None:
    for n in numbers:
        if isinstance(n, int) and n > MAX_OUTPUT_CHARS:
            raise _too_big(f"a width over {MAX_OUTPUT_CHARS}")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Before the operation: the ones that explode from small operands."""
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            sequence = isinstance(seq, str | bytes | list | tuple) and isinstance(times, int)
            if sequence and len(seq) * times > MAX_OUTPUT_CHARS:
                raise _too_big(f"a repetition longer than {MAX_OUTPUT_CHARS}")
        numbers = isinstance(left, int) and isinstance(right, int)
        if numbers and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _too_big(f"a number over {MAX_INT_BITS} bits")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        if max(abs(left).bit_length(), 1) * right > MAX_INT_BITS and abs(left) > 1:
            raise _too_big(f"a number over {MAX_INT_BITS} bits")
    elif operator == "%" and isinstance(left, str):
        if _WIDE_FORMAT.search(left):
            raise _too_big(f"a format width over {MAX_OUTPUT_CHARS}")
        if "*" in left:
            _check_width(*(right if isinstance(right, tuple) else (right,)))


_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


def _check_str_method(obj: Any, args: tuple[Any, ...]) -> None:
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if not isinstance(owner, str):
        return
    if name in _WIDTH_METHODS:
        if name == "expandtabs" and args and isinstance(args[0], int):
            _check_width(args[0] * owner.count("\t"))
        _check_width(*args)
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
            hits = owner.count(old) if old else len(owner) + 1
            _check_width(len(owner) + hits * (len(new) - len(old)))


def _budgeted_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that checks width-like arguments first and charges for its result."""

    @functools.wraps(func)  # keeps jinja_pass_arg (context / eval-context filters)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = [a for a in args if isinstance(a, str)]
        if name == "center":
            _check_width(*args[-1:], kwargs.get("width"))
        elif name == "indent" and values:
            width = kwargs.get("width", args[-1] if len(args) > 1 else 4)
            if isinstance(width, int):
                _check_width(width * (values[0].count("\n") + 1))
        elif name == "replace" and len(args) >= 3:
            _check_str_method(str(args[-3]).replace, tuple(args[-2:]))
        elif name == "format" and values and _WIDE_FORMAT.search(values[0]):
            raise _too_big(f"a format width over {MAX_OUTPUT_CHARS}")
        return _sized(func(*args, **kwargs))

    return wrapper


def _loop(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.charge(1)
        yield item


def _range(*args: int) -> range:
    values = range(*args)
    _budget().charge(len(values))
    return values


def _lipsum(n: int = 5, *args: Any, **kwargs: Any) -> Any:
    _budget().charge(max(int(n), 0) * 100)
    return _LIPSUM(n, *args, **kwargs)


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with every call, filter and sized operator charged."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _budgeted_filter(name, f) for name, f in self.filters.items()}
        self.globals.update({"range": _range, "lipsum": _lipsum, _LOOP: _loop, _SIZED: _sized})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return _sized(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _budget().charge(1)
        _check_str_method(__obj, args)
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        owner = getattr(value, "__self__", None)
        formats = getattr(value, "__name__", "") in ("format", "format_map")
        if formats and isinstance(owner, str) and _WIDE_FORMAT.search(owner):
            raise _too_big(f"a format width over {MAX_OUTPUT_CHARS}")
        return super().wrap_str_format(value)


_LIPSUM: Callable[..., Any] = ImmutableSandboxedEnvironment().globals["lipsum"]  # type: ignore[assignment]
_ENV = BudgetedSandbox(autoescape=False, undefined=StrictUndefined)
_HTML_ENV = BudgetedSandbox(autoescape=True, undefined=StrictUndefined)


def _budgeted(env: BudgetedSandbox, source: str) -> nodes.Template:
    """The parsed template with every {% for %} iterable wrapped in the loop counter and
    every ``~`` in the size check (Jinja compiles both to plain Python, no sandbox hook)."""
    tree = env.parse(source)
    for loop in tree.find_all(nodes.For):
        loop.iter = _wrapped(_LOOP, loop.iter)
    for parent in [tree, *tree.find_all(nodes.Node)]:  # listed before any change
        for field in parent.fields:
            child = getattr(parent, field)
            if isinstance(child, nodes.Concat):
                setattr(parent, field, _wrapped(_SIZED, child))
            elif isinstance(child, list):
                child[:] = [
                    _wrapped(_SIZED, c) if isinstance(c, nodes.Concat) else c for c in child
                ]
    tree.set_environment(env)
    return tree


def _wrapped(function: str, node: nodes.Node) -> nodes.Call:
    name = nodes.Name(function, "load", lineno=node.lineno)
    assert isinstance(node, nodes.Expr)
    return nodes.Call(name, [node], [], None, None, lineno=node.lineno)


@lru_cache(maxsize=2048)
def _compiled(source: str, html: bool) -> Template:
    """Compiling is ~100x the cost of rendering; broadcasts render one source per contact."""
    env = _HTML_ENV if html else _ENV
    return env.from_string(_budgeted(env, source))


def _render(template: Template, variables: dict[str, Any]) -> str:
    budget, parts, size = _budget(), [], 0
    for chunk in template.generate(**variables):
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise TemplateTooExpensive(f"output longer than {MAX_OUTPUT_CHARS}", budget.steps)
        budget.charge(len(chunk) // 1024)
        parts.append(chunk)
    return "".join(parts)


def render_template(source: str, variables: dict[str, Any], *, html: bool = False) -> str:
    """Render with a fresh budget. Synchronous and CPU-bound: async callers run it in a
    worker thread (``render_parts``), never on the event loop."""
    token = _BUDGET.set(Budget())
    try:
        return _render(_compiled(source, html), variables)
    except TemplateError as exc:
        raise ApiError(422, f"template error: {exc}", "template_error") from exc
    except (TemplateTooExpensive, RecursionError, OverflowError, MemoryError) as exc:
        raise ApiError(
            422,
            f"template too expensive to render: {exc or type(exc).__name__}",
            "template_too_expensive",
            [
                {
                    "path": "template",
                    "message": f"limits: {MAX_STEPS} steps, {MAX_OUTPUT_CHARS} characters",
                }
            ],
        ) from exc
    finally:
        _BUDGET.reset(token)


def render_parts(
    subject: str, html: str | None, text: str | None, variables: dict[str, Any]
) -> tuple[str, str | None, str | None]:
    """(subject, html, text) rendered, each with its own budget (one worker-thread hop)."""
    return (
        render_template(subject, variables),
        render_template(html, variables, html=True) if html else None,
        render_template(text, variables) if text else None,
    )


def check_template(source: str) -> None:
    """Parse only: refuse broken templates when they are saved, not when sent."""
    try:
        _ENV.parse(source)
    except TemplateError as exc:
        raise ApiError(422, f"template syntax error: {exc}", "template_error") from exc
