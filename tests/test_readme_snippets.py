"""Every ```python block of README.md and docs/*.md runs, as a reader would run it: with the installed wheel's python
(tests/installed.py), in a temporary folder outside the repository.

Markers, an HTML comment on the line before a block:
- `<!-- snippet: skip (why) -->`: not run here (a hub model, a GPU, a running server); reported as skipped, with why.
- `<!-- snippet: continues -->`: the block uses names from the block before it; they run as one script.
A block that loads a local checkpoint (`from_pretrained("./folder")`) finds a tiny random LLaVA saved there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.tiny_llava import tiny_llava

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!--\s*snippet:\s*(?P<marker>.*?)\s*-->[ \t]*\n)?^```python\n(?P<code>.*?)^```", re.S | re.M)
LOCAL_CHECKPOINT = re.compile(r"""from_pretrained\(\s*["'](\./[\w.-]+)["']""")


@dataclass
class Snippet:
    """One script: a block, with the blocks that continue it."""

    file: str
    line: int
    code: str
    skip: str | None = None
    lines: list[int] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.file}:{'+'.join(map(str, self.lines))}"


def snippets(files=FILES) -> list[Snippet]:
    found = []
    for path in files:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line, marker = text.count("\n", 0, match.start("code")), (match["marker"] or "").strip()
            if marker.startswith("continues") and found and found[-1].file == path.name:
                found[-1].code += "\n" + match["code"]
                found[-1].lines.append(line)
                continue
            if marker and not marker.startswith(("skip (", "continues")):
                raise ValueError(f"{path.name}:{line}: unknown snippet marker {marker!r}")
            skip = re.fullmatch(r"skip \((.+)\)", marker)
            found.append(Snippet(path.name, line, match["code"], skip and skip[1], [line]))
    return found


SNIPPETS = snippets()


def test_every_python_block_is_collected_once_and_imports_the_installed_names():
    """None is dropped silently (a marker other than the two above is an error at collection), and their imports
    are the installed package's (`visual_sink_lens.core`, `.viz`), not a clone's (`var_core`, `viz`)."""
    fences = sum(path.read_text().count("```python\n") for path in FILES)
    assert sum(len(snippet.lines) for snippet in SNIPPETS) == fences
    assert all("var_core" not in line and not re.match(r"\s*(from|import) (viz|ui)\b", line)
               for snippet in SNIPPETS for line in snippet.code.splitlines() if re.match(r"\s*(from|import) ", line))


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[snippet.id for snippet in SNIPPETS])
def test_the_block_runs_outside_the_repository_on_the_installed_wheel(snippet, installed, tmp_path):
    if snippet.skip:
        pytest.skip(f"{snippet.id}: {snippet.skip}")
    env = {}
    for folder in LOCAL_CHECKPOINT.findall(snippet.code):
        bundle = tiny_llava(seed=3)
        bundle.model.save_pretrained(tmp_path / folder)
        bundle.processor.save_pretrained(tmp_path / folder)
        env["VAR_CACHE_DIR"] = str(tmp_path / "cache")  # its discovered sink dims are cached here, not in ~/.cache
    (tmp_path / "snippet.py").write_text(snippet.code)
    done = installed.run(installed.python, "snippet.py", cwd=tmp_path, **env)
    assert done.returncode == 0, f"{snippet.id} failed:\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
