"""Checks the Bazel BUILD file against the source tree (Starlark parses as Python)."""
import ast
import glob
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("realm_tf", "orqa", "export", "tests")
RULES = ("py_library", "py_binary", "py_test")


def _load_targets():
  """Evaluates BUILD with stub rules; returns {name: {"srcs", "deps", "rule"}}."""
  targets = {}

  def rule(kind):
    def record(name, srcs=(), deps=(), **unused_kwargs):
      assert name not in targets, f"BUILD defines target {name!r} twice"
      targets[name] = {"rule": kind, "srcs": list(srcs), "deps": list(deps)}
    return record

  env = {kind: rule(kind) for kind in RULES}
  env.update(package=lambda **kw: None, licenses=lambda *a: None,
             glob=lambda patterns, **kw: sorted(
                 p for pat in patterns for p in glob.glob(os.path.join(REPO_ROOT, pat))))
  with open(os.path.join(REPO_ROOT, "BUILD")) as f:
    code = compile(ast.parse(f.read(), "BUILD"), "BUILD", "exec")
  exec(code, env)  # pylint: disable=exec-used
  return targets


def _source_files():
  files = []
  for package in PACKAGES:
    files += glob.glob(os.path.join(REPO_ROOT, package, "**", "*.py"), recursive=True)
  return sorted(os.path.relpath(f, REPO_ROOT) for f in files)


def _module_file(module):
  """realm_tf.a.b -> its .py file relative to the repo root, or None."""
  base = os.path.join(*module.split("."))
  for candidate in (base + ".py", os.path.join(base, "__init__.py")):
    if os.path.exists(os.path.join(REPO_ROOT, candidate)):
      return candidate
  return None


def _project_imports(path):
  """Project modules imported by a file (`import a.b`, `from a import b`)."""
  with open(os.path.join(REPO_ROOT, path)) as f:
    tree = ast.parse(f.read(), path)
  modules = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      modules.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        # `from package import submodule` needs the submodule, not the package.
        submodule = f"{node.module}.{alias.name}"
        modules.add(submodule if _module_file(submodule) else node.module)
  return {m for m in modules if m.split(".")[0] in PACKAGES and m.split(".")[0] != "tests"}


def test_every_module_has_a_target():
  owned = {src for t in _load_targets().values() for src in t["srcs"]}
  missing = [f for f in _source_files() if f not in owned]
  assert not missing, f"No BUILD target lists these files in srcs: {missing}"


def test_srcs_exist_and_tests_are_py_test():
  for name, target in _load_targets().items():
    for src in target["srcs"]:
      assert os.path.exists(os.path.join(REPO_ROOT, src)), f"{name}: missing src {src}"
      if os.path.basename(src).startswith("test_"):
        assert target["rule"] == "py_test", f"{name}: {src} must be a py_test"


def test_deps_name_existing_targets():
  targets = _load_targets()
  for name, target in targets.items():
    for dep in target["deps"]:
      if dep.startswith("@"):
        continue  # third-party (pip) dependency
      label = dep.split(":", 1)[1] if ":" in dep else dep
      assert label in targets, f"{name}: dep {dep!r} names no target in BUILD"


def test_project_imports_are_declared_deps():
  targets = _load_targets()
  owner = {src: name for name, t in targets.items() for src in t["srcs"]}
  problems = []
  for name, target in targets.items():
    deps = {d.split(":", 1)[-1] for d in target["deps"]}
    for src in target["srcs"]:
      for module in sorted(_project_imports(src)):
        module_file = _module_file(module)
        if module_file is None or module_file == src:
          continue
        dep = owner.get(module_file)
        # Importing a package's __init__ only to select Keras 2 needs no dep.
        if dep and dep != name and dep not in deps and dep not in PACKAGES:
          problems.append(f"{name} imports {module} but lacks dep ':{dep}'")
  assert not problems, "\n".join(problems)
