"""Every module imports, all in one process (entry points define absl flags only when run
as programs; module-level definitions of the same flag name collide here)."""
import importlib
import os

import pytest

from tests.conftest import REPO_ROOT

MODULES = sorted(
    os.path.relpath(os.path.join(root, name), REPO_ROOT)[:-3].replace(os.sep, ".")
    for package in ("realm_tf", "orqa", "export")
    for root, _, names in os.walk(os.path.join(REPO_ROOT, package))
    for name in names if name.endswith(".py") and name != "__init__.py")


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module):
  importlib.import_module(module)
