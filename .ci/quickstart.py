"""Print the README's quickstart command lines: the lines of the first ``` block after the
"## Quickstart" heading. Exits 1 (naming the problem) unless there are exactly two."""

import sys
from pathlib import Path


def quickstart_lines(readme: str) -> list[str]:
    text = readme.split("\n## Quickstart", 1)
    if len(text) != 2:
        raise SystemExit("README.md: no '## Quickstart' section")
    parts = text[1].split("```")
    if len(parts) < 3:
        raise SystemExit("README.md: the Quickstart section has no ``` block")
    lines = [line.strip() for line in parts[1].splitlines()[1:] if line.strip()]
    if len(lines) != 2:
        raise SystemExit(f"README.md: the Quickstart block has {len(lines)} command lines, not 2")
    return lines


if __name__ == "__main__":
    print("\n".join(quickstart_lines(Path(sys.argv[1]).read_text())))
