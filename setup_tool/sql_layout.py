"""Readable SQL for people: one clause per line, subqueries indented, whitespace only.

SQLAlchemy compiles a statement as long lines with a line break before some clauses and none
inside subqueries. A DBA signing off the upgrade script (setup_tool.tsql_script) must read it,
so `layout` breaks it into one clause per line, indents each subquery one level deeper than the
line it opens on, puts each condition of a long WHERE on its own line, and splits long column
lists. It changes whitespace between tokens and nothing else: string literals, quoted names and
comments are copied as they are (the tests check the token sequence is unchanged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

INDENT = "    "
LONG_LIST = 80  # a column list longer than this gets one item per line

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<string>N?'(?:[^']|'')*')
    | (?P<bracketed>\[[^\]]*\])
    | (?P<quoted>"(?:[^"]|"")*")
    | (?P<comment>--[^\n]*)
    | (?P<word>[@#$\w.:]+)
    | (?P<other><>|!=|>=|<=|::|\|\||.)
    """,
    re.VERBOSE | re.DOTALL,
)

# Keywords that start a clause of a query; two-word clauses are named by their first word.
_CLAUSES = {
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "SET",
    "VALUES",
    "LIMIT",
    "OFFSET",
    "RETURNING",
    "OUTPUT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "JOIN",
    "LEFT",
    "RIGHT",
    "INNER",
    "FULL",
    "CROSS",
}
_JOIN_WORDS = {"LEFT", "RIGHT", "INNER", "FULL", "CROSS", "OUTER"}
_SET_OPERATORS = {"UNION", "INTERSECT", "EXCEPT", "ALL"}
_LIST_CLAUSES = {"SELECT", "SET", "GROUP", "ORDER", "RETURNING"}
_CONDITION_CLAUSES = {"WHERE", "HAVING"}
_ROW_CLAUSES = {"INSERT", "VALUES"}  # their parenthesised lists: columns, values


@dataclass
class _Token:
    text: str
    space: str  # the whitespace before it
    kind: str

    @property
    def word(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


@dataclass
class _Context:
    """A query (the statement, or a parenthesised subquery) or a plain parenthesis."""

    is_query: bool
    indent: int
    start: int = 0  # token index of its opening parenthesis
    clause: str = ""
    clause_start: int = 0  # token index
    breaks: set[int] = field(default_factory=set)  # token indexes to break before


def tokens(sql: str) -> list[str]:
    """The statement's tokens, whitespace left out: what `layout` must never change."""
    return [t.text for t in _tokenize(sql)]


def _tokenize(sql: str) -> list[_Token]:
    result: list[_Token] = []
    space = ""
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "other"
        if kind == "space":
            space += match.group()
            continue
        result.append(_Token(match.group(), space, kind))
        space = ""
    return result


def layout(sql: str) -> str:
    """`sql` with one clause per line and subqueries indented (see the module docstring)."""
    toks = _tokenize(sql)
    if not toks:
        return sql.strip()
    # A condition's or a list's line breaks are known only at the end of its clause, after its
    # subqueries were indented from the line they open on: plan again until nothing moves.
    breaks, indents = _plan(toks, {})
    for _ in range(5):
        again = _plan(toks, indents)
        if again == (breaks, indents):
            break
        breaks, indents = again
    lines: list[str] = []
    current = ""
    for index, tok in enumerate(toks):
        if index in breaks and current.strip():
            lines.append(current.rstrip())
            current = INDENT * indents[index]
        elif current:
            # Inside the line keep one space where the compiler put any, and none where it did
            # not ("count(*)", "a.b"); a comment's line break is kept.
            current += "\n" if "\n" in tok.space and toks[index - 1].kind == "comment" else ""
            current += " " if tok.space and not current.endswith("\n") else ""
        current += tok.text
    lines.append(current.rstrip())
    return "\n".join(lines)


def _plan(toks: list[_Token], known: dict[int, int]) -> tuple[set[int], dict[int, int]]:
    """Where to break (token indexes) and each broken line's indent level; `known` is the
    previous plan's, so that a subquery is indented from the line it will really open on."""
    breaks: set[int] = set()
    indents: dict[int, int] = {}
    stack = [_Context(is_query=True, indent=0)]
    line_indent = 0
    for index, tok in enumerate(toks):
        ctx = stack[-1]
        if index in known:
            line_indent = known[index]
        word = tok.word
        if tok.text == "(":
            opens_query = index + 1 < len(toks) and toks[index + 1].word in ("SELECT", "WITH")
            stack.append(_Context(opens_query, line_indent + 1, index))
            if opens_query:
                _break(breaks, indents, index + 1, line_indent + 1)
            continue
        if tok.text == ")":
            closed = stack.pop() if len(stack) > 1 else ctx
            _finish_clause(toks, closed, index, breaks, indents)
            if closed.is_query:
                _break(breaks, indents, index, closed.indent - 1)
                line_indent = closed.indent - 1
            elif stack[-1].clause in _ROW_CLAUSES:
                _split_list(toks, closed.start + 1, index, closed.indent, breaks, indents)
            continue
        if ctx.is_query and word in _CLAUSES and _starts_clause(toks, index):
            _finish_clause(toks, ctx, index, breaks, indents)
            ctx.clause, ctx.clause_start = word, index
            if index > 0 and toks[index - 1].text != "(":
                _break(breaks, indents, index, ctx.indent)
            if word == "SELECT" and index > 0 and toks[index - 1].word in _SET_OPERATORS:
                _break(breaks, indents, index, ctx.indent)
        if index in breaks:
            line_indent = indents[index]
    _finish_clause(toks, stack[0], len(toks), breaks, indents)
    return breaks, indents


def _starts_clause(toks: list[_Token], index: int) -> bool:
    word, before = toks[index].word, toks[index - 1].word if index else ""
    after = toks[index + 1].text if index + 1 < len(toks) else ""
    if word in _JOIN_WORDS and after == "(":
        return False  # LEFT(...), RIGHT(...): functions
    if word == "FROM" and before == "DELETE":
        return False  # DELETE FROM stays one clause
    if word == "SELECT" and before == "INSERT":
        return False
    # LEFT OUTER JOIN breaks once, before LEFT; UNION ALL once, before UNION.
    return not ((word == "JOIN" or word in _JOIN_WORDS) and before in _JOIN_WORDS)


def _break(breaks: set[int], indents: dict[int, int], index: int, indent: int) -> None:
    breaks.add(index)
    indents[index] = max(indent, 0)


def _finish_clause(
    toks: list[_Token], ctx: _Context, end: int, breaks: set[int], indents: dict[int, int]
) -> None:
    """Now that the clause's extent is known: a long condition gets one condition per line,
    a long column list one item per line."""
    if not ctx.is_query or not ctx.clause:
        return
    start = ctx.clause_start
    top = _top_level(toks, start, end)
    if ctx.clause in _CONDITION_CLAUSES:
        ors = [i for i in top if toks[i].word == "OR"]
        # With an OR at the top, break before each OR only: its terms' ANDs bind tighter, and
        # lines of both at one indent would misread the precedence.
        splits = ors or [i for i in top if toks[i].word == "AND"]
        if len(splits) and _width(toks, start, end) > LONG_LIST:
            for i in splits:
                _break(breaks, indents, i, ctx.indent + 1)
    elif ctx.clause in _LIST_CLAUSES:
        _split_list(toks, start, end, ctx.indent + 1, breaks, indents)


def _split_list(
    toks: list[_Token],
    start: int,
    end: int,
    indent: int,
    breaks: set[int],
    indents: dict[int, int],
) -> None:
    """A list in [start, end) wider than LONG_LIST: one item per line."""
    if _width(toks, start, end) <= LONG_LIST:
        return
    for i in _top_level(toks, start, end):
        if toks[i].text == "," and i + 1 < end:
            _break(breaks, indents, i + 1, indent)


def _top_level(toks: list[_Token], start: int, end: int) -> list[int]:
    """Indexes in [start, end) outside any parenthesis and outside CASE ... END."""
    depth, cases, found = 0, 0, []
    for i in range(start, end):
        text, word = toks[i].text, toks[i].word
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
        elif word == "CASE":
            cases += 1
        elif word == "END" and cases:
            cases -= 1
        elif depth == 0 and cases == 0:
            found.append(i)
    return found


def _width(toks: list[_Token], start: int, end: int) -> int:
    return sum(len(t.text) + 1 for t in toks[start:end])
