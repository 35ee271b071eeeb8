"""The dashboard's JavaScript keeps the project's size rule: no function longer than
MAX_FUNCTION_LINES lines (the same limit tests/unit/test_architecture.py puts on Python).

A function's length runs from the line of its `function` keyword (or, for an arrow
function, of its parameters; for a method, of its name) to the line of the brace that
closes its body; inner functions count inside their outer one, and are measured on
their own too. Found: `function name(`, `async function name(`, anonymous `function (`,
methods and object shorthand (`name(...) {`, `get name() {`), and arrow functions whose
body is a `{` block (`const name = (...) => {`, `onclick: (e) => {`, `every(1000, () => {`).
Arrow functions with an expression body are not measured (they end at their expression).

No JavaScript parser is needed: a small scanner first blanks out comments, strings,
template-literal text (keeping the code inside `${...}`) and regular-expression literals,
then matches parentheses and braces in what is left.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "app" / "dashboard" / "static"
MAX_FUNCTION_LINES = 60

# Keywords that take a parenthesised head and a block: `if (...) {` is no function.
_BLOCK_KEYWORDS = {"if", "for", "while", "switch", "catch", "with", "return", "typeof",
                   "await", "yield", "in", "of", "new", "delete", "void", "case", "do",
                   "else", "throw"}
# After these a `/` starts a regular expression, not a division.
_REGEX_AFTER_WORDS = {"return", "typeof", "case", "do", "else", "in", "of", "new",
                      "delete", "void", "throw", "yield", "await", "instanceof"}
_REGEX_AFTER_CHARS = set("(,=:[!&|?{};+-*%<>~^")
_IDENT = re.compile(r"[A-Za-z_$][\w$]*")


@dataclass(frozen=True)
class JsFunction:
    name: str
    start: int  # 1-based line
    end: int  # 1-based line of the closing brace

    @property
    def lines(self) -> int:
        return self.end - self.start + 1


def _regex_allowed(out: list[str]) -> bool:
    """Whether a `/` here starts a regular expression (judged on the code before it)."""
    i = len(out) - 1
    while i >= 0 and out[i].isspace():
        i -= 1
    if i < 0:
        return True
    if out[i] in _REGEX_AFTER_CHARS:
        return True
    j = i
    while j >= 0 and (out[j].isalnum() or out[j] in "_$"):
        j -= 1
    return "".join(out[j + 1:i + 1]) in _REGEX_AFTER_WORDS


def mask(source: str) -> str:
    """The source with comments, string and template text and regex literals replaced by
    spaces (newlines kept, so offsets and line numbers stay), quotes kept as markers."""
    out: list[str] = []

    def blank(ch: str) -> str:
        return "\n" if ch == "\n" else " "

    # Modes on a stack: "code" (int depth of braces opened inside a `${`), "tmpl".
    stack: list[object] = [0]
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        top = stack[-1]
        if top == "tmpl":
            if ch == "\\":
                out.append(" ")
                if i + 1 < n:
                    out.append(blank(source[i + 1]))
                i += 2
            elif ch == "`":
                stack.pop()
                out.append("`")
                i += 1
            elif source.startswith("${", i):
                stack.append(0)
                out.append("  ")
                i += 2
            else:
                out.append(blank(ch))
                i += 1
            continue
        # code
        if source.startswith("//", i):
            end = source.find("\n", i)
            end = n if end == -1 else end
            out.append(" " * (end - i))
            i = end
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            end = n if end == -1 else end + 2
            out.extend(blank(c) for c in source[i:end])
            i = end
        elif ch in "'\"":
            j = i + 1
            while j < n and source[j] != ch and source[j] != "\n":
                j += 2 if source[j] == "\\" else 1
            out.append(ch)
            out.extend(blank(c) for c in source[i + 1:j])
            out.append(ch if j < n else "")
            i = j + 1
        elif ch == "`":
            stack.append("tmpl")
            out.append("`")
            i += 1
        elif ch == "/" and _regex_allowed(out):
            j, in_class = i + 1, False
            while j < n and source[j] != "\n":
                c = source[j]
                if c == "\\":
                    j += 2
                    continue
                if c == "[":
                    in_class = True
                elif c == "]":
                    in_class = False
                elif c == "/" and not in_class:
                    break
                j += 1
            out.append("/")
            out.extend(blank(c) for c in source[i + 1:j])
            out.append("/")
            i = j + 1
        elif ch == "}" and len(stack) > 1 and top == 0:
            stack.pop()  # the end of a `${...}`: back to the template's text
            out.append(" ")
            i += 1
        else:
            if ch == "{" and len(stack) > 1:
                stack[-1] = top + 1  # type: ignore[operator]
            elif ch == "}" and len(stack) > 1:
                stack[-1] = top - 1  # type: ignore[operator]
            out.append(ch)
            i += 1
    return "".join(out)


def _match(code: str, pos: int, open_ch: str, close_ch: str, step: int) -> int:
    """The index of the bracket matching the one at `pos` (step 1 forward, -1 back)."""
    depth = 0
    i = pos
    while 0 <= i < len(code):
        if code[i] == open_ch:
            depth += 1
        elif code[i] == close_ch:
            depth -= 1
        if depth == 0:
            return i
        i += step
    raise ValueError(f"unbalanced {open_ch!r} at offset {pos}")


def _skip_space(code: str, i: int, step: int) -> int:
    while 0 <= i < len(code) and code[i].isspace():
        i += step
    return i


def _word_before(code: str, end: int) -> tuple[str, int]:
    """The identifier ending at `end` (inclusive) and its start, or ("", end + 1)."""
    j = end
    while j >= 0 and (code[j].isalnum() or code[j] in "_$"):
        j -= 1
    return code[j + 1:end + 1], j + 1


def _arrow_name(code: str, start: int) -> str:
    """`name` for `const name = (...) =>` / `name: (...) =>`, else "(arrow)"."""
    i = _skip_space(code, start - 1, -1)
    word, wstart = _word_before(code, i)
    if word == "async":
        i = _skip_space(code, wstart - 1, -1)
    if i >= 0 and code[i] in "=:" and code[i - 1:i + 1] not in ("==", "!=", "<=", ">="):
        name, _ = _word_before(code, _skip_space(code, i - 1, -1))
        if name:
            return name
    return "(arrow)"


def functions_in(source: str) -> list[JsFunction]:
    code = mask(source)

    def line_of(pos: int) -> int:
        return code.count("\n", 0, pos) + 1

    found: list[JsFunction] = []
    # Arrow functions with a block body.
    for m in re.finditer(r"=>", code):
        body = _skip_space(code, m.end(), 1)
        if body >= len(code) or code[body] != "{":
            continue
        head = _skip_space(code, m.start() - 1, -1)
        if code[head] == ")":
            start = _match(code, head, ")", "(", -1)
        else:
            _, start = _word_before(code, head)
        end = _match(code, body, "{", "}", 1)
        found.append(JsFunction(_arrow_name(code, start), line_of(start), line_of(end)))
    # `function name(...) {`, `function (...) {`, methods `name(...) {`.
    for m in re.finditer(r"\)\s*\{", code):
        close = m.start()
        body = m.end() - 1
        open_ = _match(code, close, ")", "(", -1)
        before = _skip_space(code, open_ - 1, -1)
        word, wstart = _word_before(code, before)
        if word == "function":
            name, start = "(anonymous function)", wstart
        elif word and word not in _BLOCK_KEYWORDS and not word[0].isdigit():
            name, start = word, wstart
            prev, pstart = _word_before(code, _skip_space(code, wstart - 1, -1))
            if prev == "function":
                start = pstart
        else:
            continue
        end = _match(code, body, "{", "}", 1)
        found.append(JsFunction(name, line_of(start), line_of(end)))
    return sorted(found, key=lambda f: (f.start, f.name))


def js_files(folder: Path = STATIC) -> list[Path]:
    return sorted(folder.rglob("*.js"))


def too_long(folder: Path = STATIC, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    out = []
    for path in js_files(folder):
        for f in functions_in(path.read_text(encoding="utf-8")):
            if f.lines > limit:
                out.append(f"{path.relative_to(folder)}:{f.start} {f.name}: {f.lines} lines")
    return out


# ----- the scanner itself ------------------------------------------------------------------

SAMPLE = """\
// function commented(a) { {{{
import { a } from "./a.js";
export function outer(x) {
  const s = "}{ function fake() {";
  const t = `${x.map((v) => {
    return `}${v}{`;
  })} } {`;
  const r = /[}{"']\\/{/g;
  /* } */
  if (x) {
    return x / 2 / 3;
  }
  const inner = async (y) => {
    return { y };
  };
  return { s, t, r, inner };
}

const handlers = {
  onclick: (e) => {
    e.preventDefault();
  },
  destroy() {
    stop();
  },
  get friendly() { return 1; },
};

async function later() {
  for (;;) { break; }
}
const one = v => {
  return v;
};
const expr = (v) => v + 1;
"""


def test_scanner_finds_each_kind_of_function_and_skips_strings_and_comments() -> None:
    got = [(f.name, f.start, f.end) for f in functions_in(SAMPLE)]
    assert got == [
        ("outer", 3, 17),
        ("(arrow)", 5, 7),
        ("inner", 13, 15),
        ("onclick", 20, 22),
        ("destroy", 23, 25),
        ("friendly", 26, 26),
        ("later", 29, 31),
        ("one", 32, 34),
    ]


def test_scanner_sees_the_dashboard() -> None:
    names = {f.name for path in js_files() for f in functions_in(path.read_text("utf-8"))}
    assert {"runPage", "runsPage", "renderNodePanel", "followRunEvents", "h"} <= names


# ----- the rule ------------------------------------------------------------------------------


def test_no_dashboard_function_is_longer_than_the_limit() -> None:
    assert js_files(), f"no .js files under {STATIC}"
    offenders = too_long()
    assert not offenders, (
        f"JavaScript functions over {MAX_FUNCTION_LINES} lines (split them):\n  "
        + "\n  ".join(offenders))
