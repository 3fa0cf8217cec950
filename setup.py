"""How the wheel is laid out: ONE top-level package, `visual_sink_lens`, built from the repository's fixed folders.

    visual_sink_lens/__init__.py     written here (the version)
    visual_sink_lens/app.py          ← app.py
    visual_sink_lens/notebook.py     ← docs/notebook.py (the walkthrough; `python -m visual_sink_lens.notebook`)
    visual_sink_lens/core/…          ← var_core/…  (core/_assets ← assets/, core/_results ← results/)
    visual_sink_lens/viz/…           ← viz/…
    visual_sink_lens/ui/…            ← ui/…

The sources keep their names (`var_core`, `viz`, `ui` import as they are in a clone and in the tests); `build_py`
rewrites, in every module it copies, the absolute imports of those names and the strings that name one of their
modules (`importlib.import_module("var_core.models.x")`, resource anchors) to the installed names. Imports are found
with `tokenize` and the result is checked with `ast`, never by text search. pyproject.toml holds the metadata.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from pathlib import Path

TOP = "visual_sink_lens"
RENAMES = {"var_core": f"{TOP}.core", "viz": f"{TOP}.viz", "ui": f"{TOP}.ui"}  # source package → installed package
MODULES = {"app": "app.py", "notebook": os.path.join("docs", "notebook.py")}  # visual_sink_lens.<name> ← file
DATA_PACKAGES = {f"{TOP}.core._assets": "assets", f"{TOP}.core._assets.examples": os.path.join("assets", "examples"),
                 f"{TOP}.core._results": "results"}
PACKAGE_DATA = {
    f"{TOP}.core._assets": ["default_model.safetensors", "default_model_card.md", "default_model_train.json",
                            "sink_report.json"],
    f"{TOP}.core._assets.examples": ["*.png", "examples.json"],
    f"{TOP}.core._results": ["*/summary.json", "*/*.png", "README.md"],
}
EXCLUDE_PACKAGE_DATA = {f"{TOP}.ui": ["*.pyi"]}  # stubs Gradio writes next to its custom components at run time
INIT = '''"""Visual Sink Lens, installed: `visual_sink_lens.core` (the VAR library; `var_core` in a clone),
`visual_sink_lens.viz` (the views; `viz` in a clone), `visual_sink_lens.ui` + `visual_sink_lens.app` (the Gradio app)
and `visual_sink_lens.notebook` (the walkthrough, a `# %%` script)."""

from visual_sink_lens.core import __version__
'''
MODULE_PATH = re.compile(r"(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?P<attr>:[A-Za-z_][\w.]*)?")


def renamed(module: str) -> str | None:
    """`var_core.models.x` → `visual_sink_lens.core.models.x`; None for a module outside the renamed packages."""
    top, dot, rest = module.partition(".")
    return RENAMES[top] + dot + rest if top in RENAMES else None


def names_a_module(text: str, modules: set[str]) -> bool:
    """A string that is a module path (optionally `:attribute`) of a renamed package. Bare `viz` / `ui` are words too,
    so only dotted paths count, and bare `var_core`."""
    match = MODULE_PATH.fullmatch(text)
    module = match and match["module"]
    return bool(module) and module in modules and ("." in module or module == "var_core")


COMPOUND = {"if", "elif", "else", "while", "for", "with", "try", "except", "finally", "def", "class", "async"}


def _split_header(statement: list[tokenize.TokenInfo]):
    """`if x: import a` → the header `if x:`, then `import a` (the first `:` outside brackets ends a header)."""
    if statement[0].type == tokenize.NAME and statement[0].string in COMPOUND:
        depth = 0
        for index, token in enumerate(statement):
            if token.type == tokenize.OP:
                depth += (token.string in {"(", "[", "{"}) - (token.string in {")", "]", "}"})
                if token.string == ":" and depth == 0:
                    yield statement[:index + 1]
                    if statement[index + 1:]:
                        yield from _split_header(statement[index + 1:])
                    return
    yield statement


def _statements(tokens: list[tokenize.TokenInfo]):
    """The tokens of each simple statement (split at NEWLINE, `;` and a compound statement's header), without
    comments and line breaks."""
    statement = []
    for token in tokens:
        if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER) or (token.type == tokenize.OP and token.string == ";"):
            if statement:
                yield from _split_header(statement)
            statement = []
        elif token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            statement.append(token)


def _dotted(tokens: list[tokenize.TokenInfo], start: int) -> tuple[str, int]:
    """The dotted name starting at tokens[start] and the index after it."""
    end = start
    while end < len(tokens) and (tokens[end].type == tokenize.NAME or tokens[end].string == "."):
        if tokens[end].type == tokenize.NAME and tokens[end].string in ("import", "as"):
            break
        end += 1
    return "".join(token.string for token in tokens[start:end]), end


def _import_replacement(statement: list[tokenize.TokenInfo]) -> str | None:
    """`import a.b as c, d` with a renamed: the same bindings under the installed names; None if nothing to rename."""
    aliases, index, changed = [], 1, False
    while index < len(statement):
        name, index = _dotted(statement, index)
        alias = None
        if index < len(statement) and statement[index].string == "as":
            alias, index = statement[index + 1].string, index + 2
        index += 1  # the comma
        new = renamed(name)
        changed |= new is not None
        if new is None:
            aliases.append(f"import {name}" + (f" as {alias}" if alias else ""))
        elif alias:
            aliases.append(f"import {new} as {alias}")
        else:  # `import var_core.models` binds `var_core`: import the module, then bind the old top name to its package
            top = name.partition(".")[0]
            package, _, leaf = RENAMES[top].rpartition(".")
            if "." in name:
                aliases.append(f"import {new}")
            aliases.append(f"from {package} import {leaf}" + (f" as {top}" if leaf != top else ""))
    return "; ".join(aliases) if changed else None


def rewrite(source: str, modules: set[str]) -> str:
    """`source` with its absolute imports of the renamed packages, and the strings naming one of `modules` (the
    renamed packages' module names, e.g. {"var_core", "var_core.models"}), under the installed names."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    edits = []  # ((row, col), (row, col), text)
    for statement in _statements(tokens):
        first = statement[0]
        if first.type == tokenize.NAME and first.string == "from" and len(statement) > 1:
            name, end = _dotted(statement, 1)
            new = renamed(name) if not name.startswith(".") else None
            if new:
                edits.append((statement[1].start, statement[end - 1].end, new))
        elif first.type == tokenize.NAME and first.string == "import":
            new = _import_replacement(statement)
            if new:
                if statement[-1].end[0] != first.start[0]:
                    raise ValueError(f"line {first.start[0]}: write this import on one line to have it rewritten")
                edits.append((first.start, statement[-1].end, new))
    for token in tokens:
        if token.type == tokenize.STRING:
            try:
                value = ast.literal_eval(token.string)
            except (ValueError, SyntaxError):  # f-strings; leftovers() reports one that builds a module path
                continue
            if isinstance(value, str) and names_a_module(value, modules):
                module, _, attr = value.partition(":")
                quote = re.match(r"[A-Za-z]*('''|\"\"\"|'|\")", token.string)
                text = quote[0] + renamed(module) + (":" + attr if attr else "") + quote[1]
                edits.append((token.start, token.end, text))
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    for start, end, text in sorted(edits, reverse=True):
        source = source[:offsets[start[0] - 1] + start[1]] + text + source[offsets[end[0] - 1] + end[1]:]
    return source


def leftovers(source: str, modules: set[str]) -> list[str]:
    """What still names a renamed package as a module after `rewrite`: absolute imports, module-path strings,
    f-strings that start a module path (the build cannot rewrite those). Empty when the module is clean."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.partition(".")[0] in RENAMES:
            found.append(f"line {node.lineno}: from {node.module} import …")
        elif isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {alias.name}" for alias in node.names
                      if alias.name.partition(".")[0] in RENAMES]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and names_a_module(node.value, modules):
            found.append(f"line {node.lineno}: the string {node.value!r}")
        elif (isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant)
              and str(node.values[0].value).partition(".")[0] in RENAMES and "." in str(node.values[0].value)
              and MODULE_PATH.match(str(node.values[0].value))):
            found.append(f"line {node.lineno}: an f-string starting {node.values[0].value!r}")
    return found


def source_modules(root: Path = Path(".")) -> set[str]:
    """Every module and package name under the renamed packages (e.g. `var_core.models.llava`), plus the data
    packages (`var_core._assets` …), as named in a clone."""
    names = set(RENAMES)
    for top in RENAMES:
        for path in (root / top).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    old = {new: old for old, new in RENAMES.items()}
    for package in DATA_PACKAGES:
        parent, _, rest = package[len(TOP) + 1:].partition(".")
        names.add(f"{old[f'{TOP}.{parent}']}.{rest}")
    return names


def packages(root: Path = Path(".")) -> tuple[list[str], dict[str, str]]:
    """The installed package names and where each one's files are (setuptools' `packages`, `package_dir`)."""
    found, package_dir = [TOP], {}
    for old, new in RENAMES.items():
        package_dir[new] = old
        for init in sorted((root / old).rglob("__init__.py")):
            parts = init.parent.relative_to(root / old).parts
            found.append(".".join((new, *parts)))
    package_dir.update(DATA_PACKAGES)
    return found + list(DATA_PACKAGES), package_dir


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import the functions above
    from setuptools import setup
    from setuptools.command.build_py import build_py as _build_py
    from setuptools.command.editable_wheel import editable_wheel as _editable_wheel

    class build_py(_build_py):
        """Copies the packages under their installed names and rewrites what names the old ones."""

        def find_package_modules(self, package, package_dir):
            if package == TOP:  # its modules come from files elsewhere in the repository; __init__ is written in run()
                return [(TOP, module, path) for module, path in MODULES.items()]
            return super().find_package_modules(package, package_dir)

        def build_module(self, module, module_file, package):
            outfile, copied = super().build_module(module, module_file, package)
            modules = source_modules()
            text = Path(outfile).read_text(encoding="utf-8")
            new = rewrite(text, modules)
            problems = leftovers(new, modules)
            if problems:
                raise RuntimeError(f"{module_file}: cannot rename for the wheel: {'; '.join(problems)}")
            if new != text:
                Path(outfile).write_text(new, encoding="utf-8")
            return outfile, copied

        def run(self):
            super().run()
            if not self.editable_mode:
                init = Path(self.build_lib, TOP, "__init__.py")
                init.parent.mkdir(parents=True, exist_ok=True)
                init.write_text(INIT, encoding="utf-8")

        def get_outputs(self, include_bytecode=True):
            return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, TOP, "__init__.py")]

    class editable_wheel(_editable_wheel):
        def run(self):
            raise SystemExit("visual-sink-lens cannot be installed in editable mode: the wheel renames var_core/, viz/ "
                             "and ui/ under visual_sink_lens. In a clone, use the sources as they are "
                             "(`pip install -r requirements.txt`, then `import var_core`), or `pip install .`.")

    found, package_dir = packages()
    setup(packages=found, package_dir=package_dir, package_data=PACKAGE_DATA,
          exclude_package_data=EXCLUDE_PACKAGE_DATA, cmdclass={"build_py": build_py, "editable_wheel": editable_wheel})
