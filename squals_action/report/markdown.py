"""Markdown for GitHub: escaping of untrusted text, tables and collapsed sections.

PR titles, branch names, labels, comment bodies and command output are written by people we do not trust. In a
comment, job summary or check-run text they must show as text: no mention pings (``@org/team``), no injected
links or images, no HTML (``<details>``, ``<img>``), no table breakage (``|``, newlines), no closing of our
own code fences. Everything here is pure string work with no imports beyond the standard library.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

#: Characters with a meaning anywhere in a line of GitHub-flavoured markdown, escaped by :func:`escape`.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#|~>])")
#: What makes a list item or numbered item only at the start of a line: escaped there alone, so that
#: ``pr-1 v1.2`` stays readable. (``#`` is escaped everywhere: ``owner/repo#1`` would cross-reference.)
_MD_LINE_START = re.compile(r"^([-+!])|^(\d+)\.")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
#: ``@user`` / ``@org/team`` mentions: every ``@`` becomes the entity ``&#64;``, which GitHub does not link.
_MENTION = re.compile(r"@")
_AUTOLINK = re.compile(r"(?i)\b(https?|ftp|mailto|javascript|data):")

GITHUB_COMMENT_LIMIT = 65_536
"""The most characters GitHub accepts in an issue comment, PR comment or check-run summary body."""


def escape(text: object, max_len: int | None = None) -> str:
    """Escape untrusted text for inline use (a table cell, a heading, a sentence): one line, shown verbatim.

    Newlines become spaces, HTML is entity-encoded, markdown punctuation is backslash-escaped, ``@`` mentions
    and bare URLs are defused so the text cannot ping people or become a link. ``max_len`` cuts the *input*
    (with an ellipsis) before escaping, so a long branch name cannot blow up a table.
    """
    s = "" if text is None else str(text)
    s = _strip_controls(s)
    s = " ".join(s.split())
    if max_len is not None and len(s) > max_len:
        s = s[: max(max_len - 1, 0)] + "…"
    s = "".join(_HTML.get(ch, ch) for ch in s)
    # HTML entities we just produced contain '&' and ';' only, which are not in _MD_SPECIAL.
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = _MD_LINE_START.sub(lambda m: "\\" + m.group(1) if m.group(1) else m.group(2) + "\\.", s)
    s = _MENTION.sub("&#64;", s)
    s = _AUTOLINK.sub(lambda m: m.group(1) + "&#58;", s)
    return s


def code(text: object, max_len: int | None = None) -> str:
    """Untrusted text as inline code (a branch name, a command): HTML ``<code>`` with entities, one line.

    Backtick spans cannot hold every string safely (a backtick run inside ends them), so this uses ``<code>``
    with HTML escaping; GitHub renders it the same and nothing inside is interpreted.
    """
    s = "" if text is None else str(text)
    s = " ".join(_strip_controls(s).split())
    if max_len is not None and len(s) > max_len:
        s = s[: max(max_len - 1, 0)] + "…"
    s = "".join(_HTML.get(ch, ch) for ch in s)
    s = s.replace("|", "&#124;").replace("`", "&#96;").replace("@", "&#64;")
    return f"<code>{s}</code>"


def code_block(text: object, language: str = "", max_len: int | None = None) -> str:
    """Multi-line untrusted text (a log tail) in a fenced block whose fence is longer than any run inside.

    ``max_len`` keeps the *end* of the text (logs matter at the tail) and says how much was dropped.
    """
    s = "" if text is None else str(text)
    s = _strip_controls(s, keep_newlines=True)
    if max_len is not None and len(s) > max_len:
        dropped = len(s) - max_len
        s = f"… ({dropped} characters cut)\n" + s[-max_len:]
    longest = max((len(m.group(0)) for m in re.finditer(r"`+", s)), default=0)
    fence = "`" * max(3, longest + 1)
    lang = re.sub(r"[^A-Za-z0-9_+-]", "", language)
    return f"{fence}{lang}\n{s.rstrip()}\n{fence}"


_SAFE_URL = re.compile(r"(?i)^https?://[^\s<>()\[\]`\"'\\]+$")


def link(label: object, url: str | None) -> str:
    """A link with an escaped label; only ``http(s)`` URLs become links, anything else is shown as text."""
    text = escape(label)
    if not url or not _SAFE_URL.match(url):
        return text
    return f"[{text}]({url})"


def url_link(url: str | None) -> str:
    """A URL shown as inline code and linked to itself (when it is a plain ``http(s)`` URL)."""
    if not url:
        return ""
    shown = code(url)
    return f"[{shown}]({url})" if _SAFE_URL.match(url) else shown


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A GitHub table. Headers are ours (trusted markdown); cells must already be escaped/formatted markdown.

    Newlines and pipes in cells would break the table, so they are neutralised here as a last guard.
    ``align`` is a string of ``l``/``c``/``r`` per column (default left).
    """

    def cell(value: object) -> str:
        s = "" if value is None else str(value)
        s = s.replace("\r", "").replace("\n", "<br>")
        s = re.sub(r"(?<!\\)\|", r"\\|", s)
        return s or " "

    marks = {"l": ":--", "c": ":-:", "r": "--:"}
    seps = [marks.get(align[i] if i < len(align) else "l", ":--") for i in range(len(headers))]
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "| " + " | ".join(seps) + " |"]
    for row in rows:
        padded = list(row) + [""] * (len(headers) - len(row))
        lines.append("| " + " | ".join(cell(c) for c in padded[: len(headers)]) + " |")
    return "\n".join(lines)


def details(summary: str, body: str, open_: bool = False) -> str:
    """A collapsed section. ``summary`` is trusted inline markdown/HTML (escape untrusted parts first).

    Blank lines around the body are required for GitHub to render markdown inside ``<details>``.
    """
    attr = " open" if open_ else ""
    return f"<details{attr}>\n<summary>{summary}</summary>\n\n{body.strip()}\n\n</details>"


def truncate(body: str, limit: int = GITHUB_COMMENT_LIMIT, pointer: str = "") -> str:
    """Cut ``body`` to at most ``limit`` characters, ending with ``pointer`` (e.g. "see the job summary").

    The cut happens at a line boundary when one is near, and any ``<details>`` or code fence left open by
    the cut is closed so the rest of the page still renders.
    """
    if len(body) <= limit:
        return body
    note = "\n\n" + (pointer or "… (cut to fit GitHub's comment size limit)")
    # Reserve room for the note and for closers we may need to append.
    reserve = len(note) + 200
    cut = body[: max(limit - reserve, 0)]
    nl = cut.rfind("\n")
    if nl > len(cut) - 2000:
        cut = cut[:nl]
    closers: list[str] = []
    fences = re.findall(r"(?m)^(`{3,})", cut)
    if len(fences) % 2 == 1:
        closers.append(fences[-1])
    open_details = len(re.findall(r"<details\b", cut)) - len(re.findall(r"</details>", cut))
    closers.extend(["</details>"] * max(open_details, 0))
    out = cut.rstrip() + ("\n" + "\n".join(closers) if closers else "") + note
    return out[:limit]


def duration(seconds: float | None) -> str:
    """A short human duration: ``850 ms``, ``12.3 s``, ``4m 05s``, ``2h 03m``; blank for unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _strip_controls(s: str, keep_newlines: bool = False) -> str:
    """Drop C0/C1 control characters and bidi overrides (which can disguise text), keep tab and newlines."""
    allowed = "\t\n" if keep_newlines else "\t"
    return "".join(
        ch for ch in s if ch in allowed or not (ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 or ord(ch) in _BIDI)
    )


_BIDI = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
