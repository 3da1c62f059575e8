r"""Code-structure figures of the packages, at the working tree or at any git revision.

  python bench/code_metrics.py [--rev=<commit>] [--output=metrics.json]

Prints JSON with, for `realm_tf/`, `orqa/` and `export/`:
* `largest_functions`: the five longest functions (lines, file, name);
* `flags_reads_outside_main`: `FLAGS.<name>` reads outside an entry point's `main`,
  `define_flags` and its flags-to-config mapping (`*_from_flags`): library code should
  take configs, not read flags; with the files;
* `repeated_blocks`: windows of 6 code lines (blank lines, comments, imports and
  docstrings skipped; names, strings and numbers kept) that occur in two or more places;
* `upward_imports`: imports that run against realm_tf <- orqa <- export (a lower package
  importing a higher one);
* `files` and `lines` per package.

Run it at two commits to compare (for example the one before the architecture work and
HEAD); it reads the files with `git show` when `--rev` is given and never changes them.
"""

import argparse
import ast
import collections
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional

PACKAGES = ("realm_tf", "orqa", "export")
LEVEL = {name: i for i, name in enumerate(PACKAGES)}
WINDOW = 6
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*args: str) -> str:
  return subprocess.run(["git", *args], cwd=REPO_ROOT, check=True, capture_output=True,
                        text=True).stdout


def read_sources(rev: Optional[str]) -> Dict[str, str]:
  """path -> source of every .py file of the packages (at `rev`, or the working tree)."""
  if rev:
    paths = _git("ls-tree", "-r", "--name-only", rev, "--", *PACKAGES).split()
  else:
    paths = _git("ls-files", "--", *PACKAGES).split()
  sources = {}
  for path in paths:
    if not path.endswith(".py"):
      continue
    if rev:
      sources[path] = _git("show", f"{rev}:{path}")
    elif os.path.exists(os.path.join(REPO_ROOT, path)):
      with open(os.path.join(REPO_ROOT, path), encoding="utf-8") as f:
        sources[path] = f.read()
  return sources


def _functions(tree):
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      yield node


def largest_functions(trees, count: int = 5) -> List[dict]:
  found = [dict(lines=node.end_lineno - node.lineno + 1, file=path, name=node.name)
           for path, tree in trees.items() for node in _functions(tree)]
  return sorted(found, key=lambda f: -f["lines"])[:count]


def flags_reads_outside_main(trees) -> dict:
  """`FLAGS.x` attribute reads whose innermost enclosing function is not `main`,
  `define_flags` or a `*_from_flags` mapping."""
  per_file = collections.Counter()

  def visit(node, function):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      function = node.name
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id == "FLAGS" and isinstance(node.ctx, ast.Load)
        and function is not None and function not in ("main", "define_flags")
        and not function.endswith("_from_flags")):
      per_file[path] += 1
    for child in ast.iter_child_nodes(node):
      visit(child, function)

  for path, tree in trees.items():
    visit(tree, None)
  return dict(total=sum(per_file.values()), files=dict(sorted(per_file.items())))


def _code_lines(source: str, tree) -> List[tuple]:
  """(stripped line, line number) of the code lines, docstrings and imports skipped."""
  docstring_lines = set()
  for node in ast.walk(tree):
    body = getattr(node, "body", None)
    if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
        getattr(body[0], "value", None), ast.Constant) and isinstance(
            body[0].value.value, str):
      docstring_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
  out = []
  for number, line in enumerate(source.splitlines(), 1):
    text = line.strip()
    if (not text or text.startswith(("#", "import ", "from ")) or number in docstring_lines):
      continue
    out.append((text, number))
  return out


def repeated_blocks(sources, trees) -> dict:
  """Windows of WINDOW code lines found in two or more places (overlaps merged per file)."""
  places = collections.defaultdict(list)
  for path, source in sources.items():
    lines = _code_lines(source, trees[path])
    for i in range(len(lines) - WINDOW + 1):
      window = tuple(text for text, _ in lines[i:i + WINDOW])
      if sum(len(t) for t in window) < 120:  # Too short to matter (e.g. closing brackets).
        continue
      places[window].append((path, lines[i][1]))
  repeated = {w: p for w, p in places.items() if len(p) > 1}
  examples = sorted(({"places": [f"{f}:{n}" for f, n in p[:4]], "first_line": w[0]}
                     for w, p in repeated.items()), key=lambda e: e["places"])
  # Consecutive windows of one repeat overlap: count each maximal run once.
  starts = sorted({(f, n) for p in repeated.values() for f, n in p})
  runs, previous = 0, None
  for place in starts:
    if previous is None or place[0] != previous[0] or place[1] - previous[1] > WINDOW:
      runs += 1
    previous = place
  return dict(windows=len(repeated), regions=runs, examples=examples[:10])


def upward_imports(trees) -> List[str]:
  found = []
  for path, tree in trees.items():
    package = path.split("/")[0]
    for node in ast.walk(tree):
      names = []
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = [node.module]
      for name in names:
        top = name.split(".")[0]
        if top in LEVEL and LEVEL[top] > LEVEL[package]:
          found.append(f"{path} imports {name}")
  return sorted(set(found))


def measure(rev: Optional[str]) -> dict:
  sources = read_sources(rev)
  trees = {path: ast.parse(source, path) for path, source in sources.items()}
  sizes = {p: dict(files=sum(1 for f in sources if f.startswith(p + "/")),
                   lines=sum(s.count("\n") for f, s in sources.items()
                             if f.startswith(p + "/"))) for p in PACKAGES}
  return dict(rev=rev or "working tree", packages=sizes,
              largest_functions=largest_functions(trees),
              flags_reads_outside_main=flags_reads_outside_main(trees),
              repeated_blocks=repeated_blocks(sources, trees),
              upward_imports=upward_imports(trees))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rev", default=None, help="git revision (default: working tree)")
  parser.add_argument("--output", default=None, help="also write the JSON here")
  args = parser.parse_args(argv)
  result = json.dumps(measure(args.rev), indent=2)
  print(result)
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      f.write(result + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
