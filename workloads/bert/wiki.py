"""English Wikipedia as plain-text documents, from a dump or from WikiExtractor's output.

- A dump (`enwiki-latest-pages-articles.xml.bz2`, MediaWiki's export XML, bz2 or plain) is
  streamed page by page; articles (namespace 0, not redirects) have their wikitext reduced to
  prose by `clean_wikitext`: templates, tables, references, files, categories, headings and
  markup removed, links replaced by their text.
- WikiExtractor's output (`AA/wiki_00`, ... holding `<doc id=.. title=..>` blocks), the
  preprocessing MLPerf's BERT uses, is read as it is.
"""

from __future__ import annotations

import bz2
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

DUMP_URL = "https://dumps.wikimedia.org/enwiki/latest/enwiki-latest-pages-articles.xml.bz2"

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_DROP_TAGS = re.compile(r"<(ref|math|gallery|timeline|score|syntaxhighlight|source|imagemap|table)\b[^>]*?"
                        r"(/>|>.*?</\1\s*>)", re.S | re.I)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")  # innermost first, repeated until none is left
_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)
_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")  # innermost first
_EXTERNAL = re.compile(r"\[(?:https?:)?//[^\s\]]+(?:\s([^\]]*))?\]")
_DROP_LINKS = ("file:", "image:", "category:", "media:", "wikipedia:", "wp:", "help:", "template:", "portal:",
               "special:", "draft:", "user:", "talk:")
_HEADING = re.compile(r"^=+.*?=+\s*$", re.M)
_MAGIC = re.compile(r"__[A-Z]+__")
_EMPHASIS = re.compile(r"'{2,}")
_LIST_MARK = re.compile(r"^[*#:;]+\s*", re.M)


def _repeat(pattern: re.Pattern, repl, text: str) -> str:
    while True:
        new = pattern.sub(repl, text)
        if new == text:
            return text
        text = new


def _link_text(match: re.Match) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.strip().lower().startswith(_DROP_LINKS) or re.match(r"^[a-z]{2,3}(-[a-z]+)?:", target.strip()):
        return ""  # files, categories, interlanguage links
    return (label.rsplit("|", 1)[-1] if label else target).strip()


def clean_wikitext(text: str) -> str:
    """Prose paragraphs of an article's wikitext, one a line."""
    text = _COMMENT.sub("", text)
    text = _DROP_TAGS.sub("", text)
    text = _repeat(_TEMPLATE, "", text)
    text = _repeat(_TABLE, "", text)
    text = _repeat(_LINK, _link_text, text)
    text = _EXTERNAL.sub(lambda m: m.group(1) or "", text)
    text = _TAG.sub("", text)
    text = _HEADING.sub("", text)
    text = _MAGIC.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = _LIST_MARK.sub("", text)
    text = html.unescape(text).replace("\u00a0", " ")
    lines = []
    for line in text.splitlines():
        line = re.sub(r"\s+", " ", line).strip()
        if line and not line.startswith(("|", "!", "{", "}")) and len(line.split()) >= 3:
            lines.append(line)
    return "\n".join(lines)


def dump_articles(path: Path) -> Iterator[str]:
    """The cleaned text of each article of a MediaWiki XML dump (`.xml` or `.xml.bz2`)."""
    path = Path(path)
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rb") as f:
        context = ET.iterparse(f, events=("start", "end"))
        _, root = next(context)
        for event, elem in context:
            if event != "end" or elem.tag.rsplit("}", 1)[-1] != "page":
                continue
            ns = elem.findtext("{*}ns")  # {*}: any namespace or none
            is_redirect = elem.find("{*}redirect") is not None
            text = elem.findtext("{*}revision/{*}text")
            root.clear()  # keep memory flat over millions of pages
            if ns == "0" and not is_redirect and text:
                cleaned = clean_wikitext(text)
                if cleaned:
                    yield cleaned


_DOC = re.compile(r"<doc\b[^>]*>\n?(.*?)</doc>", re.S)


def extracted_articles(folder: Path) -> Iterator[str]:
    """Documents of WikiExtractor's output (files of `<doc ...>title\\n\\ntext</doc>` blocks)."""
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".")):
        opener = bz2.open if path.suffix == ".bz2" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for match in _DOC.finditer(f.read()):
                title, _, body = match.group(1).partition("\n")
                body = "\n".join(line.strip() for line in body.splitlines() if line.strip())
                if body:
                    yield body


def is_extracted(folder: Path) -> bool:
    """Does `folder` look like WikiExtractor's output?"""
    for path in sorted(Path(folder).rglob("wiki_*"))[:1]:
        with open(path, "rb") as f:
            return f.read(5) == b"<doc "
    return False
