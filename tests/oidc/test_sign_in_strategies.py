"""The shape of sign-in: methods are strategies, and only their own packages name them."""

from __future__ import annotations

import ast
from pathlib import Path

from authpi.oidc.signin import registry
from authpi.services.auth_method_types import TYPES

OIDC = Path(__file__).parents[2] / "src" / "authpi" / "oidc"
METHODS = OIDC / "signin" / "methods"


def test_no_code_outside_a_method_package_names_a_method_type() -> None:
    """The flow orchestrates steps; a new method needs no ``if method == ...`` anywhere else."""
    offenders = []
    for path in OIDC.rglob("*.py"):
        if METHODS in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in TYPES:
                offenders.append(f"{path.relative_to(OIDC)}:{node.lineno} {node.value!r}")
    assert offenders == []


def test_every_strategy_lives_in_its_own_package_with_its_templates() -> None:
    for name, strategy in registry.STRATEGIES.items():
        assert name in TYPES and strategy.method == name
        package = METHODS / name
        assert Path(type(strategy).__module__.replace(".", "/")).parts[-1] == name
        assert package.is_dir()
        if strategy.templates is not None:
            assert (strategy.templates / name).is_dir()
        assert strategy.steps and strategy.amr
