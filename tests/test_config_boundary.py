"""The root config stops at the run flows: below them no module imports the root config type or
reads sections off a root config; components get their own section or plain arguments.

The test walks every module of ``uda_reid`` and ``camstyle`` with ``ast`` and lists, per
module and enclosing function, (a) imports of the root config API from ``uda_reid.config``,
(b) attribute reads ``<x>.<ROOT FIELD>`` (``cfg.MODEL``, ``stage.SOLVER``, ...) and (c) uses
of the entry points that take the root config (``build_model(cfg, n)``). Everything
it finds must be covered by :data:`ALLOWED`; an entry that covers nothing is an error too, so
the list only shrinks.
"""
import ast
import dataclasses
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

from uda_reid.config import Config

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("uda_reid", "camstyle")
# The names of uda_reid.config that make, take or hand out a whole root config.
ROOT_API = {"Config", "load_config", "get_default_config", "apply_overrides", "save_config",
            "dump_config", "config_diff"}
CONFIG_MODULES = {"uda_reid.config", "uda_reid.config.root", "uda_reid.config.io"}
# What a root config is called where it is passed around.
ROOT_VARIABLES = {"cfg", "config", "stage", "root_cfg"}

# module (every function in it) or module:function -> why it may hold the root config.
ALLOWED: Dict[str, str] = {
    "uda_reid.config": "the config package itself",
    # Run flows: they alone hold the root config and the run's context.
    "uda_reid.engine.flows": "run flows train and test",
    "uda_reid.engine.cli": "the tools' config loading (--config-file and overrides)",
    "uda_reid.engine.output_dir": "the run's folder: identity, resume check, config.yaml, seed",
    "uda_reid.engine.trainer_builder": "the standard trainer of a run's config",
    "uda_reid.engine.evaluate": "evaluation on the config's test datasets",
    "uda_reid.engine.trained_model": "the config's model with a checkpoint's weights",
    "uda_reid.adapt.pipeline": "run flow adapt (stage configs, source cache, methods)",
    "camstyle.jobs": "run flow camstyle (train, generate, evaluate)",
    "uda_reid.export.pipeline": "run flow export",
    "uda_reid.benchmarks.train": "run flow of the training-loop benchmark",
    "uda_reid.reproduce.selection:require_development": "run flow of the selection runs",
    # Entry points: each unpacks the root config once into its sections and calls the plain
    # builder beside it, so that the run flows above call them unchanged.
    "uda_reid.models.reid_model:build_model": "entry point of ReIDModel.from_config",
    "uda_reid.losses.computer:build_loss_fn": "entry point of LossComputer.from_config",
    "uda_reid.engine.optim:build_optimizer_from_config": "entry point",
    "uda_reid.engine.lr_schedule:build_lr_scheduler": "entry point",
    "uda_reid.data.transforms:build_transforms_from_config": "entry point",
    "uda_reid.data.datasets:build_dataset_from_config": "entry point",
    "uda_reid.data.loaders:build_train_loader_from_config": "entry point",
    "uda_reid.data.loaders:build_test_set_from_config": "entry point",
    "uda_reid.data.loaders:build_test_loader_from_config": "entry point",
    "uda_reid.evaluation.evaluator:evaluate_from_config": "entry point",
    # Not the root config: an ADAPT.CLUSTER section named ``cfg`` (its SEED key).
}


# Calling (or naming) an entry point means holding the root config.
ENTRY_POINTS = {key.split(":")[1] for key, why in ALLOWED.items() if why.startswith("entry point")}


def root_fields() -> Tuple[Set[str], Set[str]]:
    """The root config's field names, and those of them a section also uses as a key
    (``ADAPT.SOLVER``): these count only on a variable named like a root config."""
    root = {f.name for f in dataclasses.fields(Config)}
    shared: Set[str] = set()

    def walk(section: object) -> None:
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if dataclasses.is_dataclass(value):
                shared.update({g.name for g in dataclasses.fields(value)} & root)
                walk(value)

    walk(Config())
    return root, shared


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def base_name(node: ast.expr) -> str:
    """``cfg`` for ``cfg``, ``self.cfg`` or ``ctx.cfg``; empty for other expressions."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


class Finder(ast.NodeVisitor):
    """Collects ``(function, what)`` for root-config imports, reads and entry-point uses in
    one module."""

    def __init__(self, root: Set[str], shared: Set[str]) -> None:
        self.root, self.shared = root, shared
        self.scope: List[str] = []
        self.found: List[Tuple[str, str]] = []

    def report(self, node: ast.AST, what: str) -> None:
        self.found.append((self.scope[0] if self.scope else "", f"line {node.lineno}: {what}"))

    def visit_scope(self, node: ast.AST) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_scope

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module in CONFIG_MODULES:
            for alias in node.names:
                if alias.name in ROOT_API:
                    self.report(node, f"imports {alias.name} from {node.module}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in self.root and (node.attr not in self.shared
                                       or base_name(node.value) in ROOT_VARIABLES):
            self.report(node, f"reads {ast.unparse(node)}")
        if node.attr in ENTRY_POINTS:
            self.report(node, f"uses the entry point {node.attr}")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in ENTRY_POINTS:
            self.report(node, f"uses the entry point {node.id}")


def find_root_config_uses(source: str) -> List[Tuple[str, str]]:
    root, shared = root_fields()
    finder = Finder(root, shared)
    finder.visit(ast.parse(source))
    return finder.found


def every_use() -> Iterator[Tuple[str, str, str]]:
    """``(module, top-level function or class, what)`` for every module of the packages."""
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = module_name(path)
            for scope, what in find_root_config_uses(path.read_text()):
                yield name, scope, what


def allowed_by(module: str, scope: str, allowed: Dict[str, str] = ALLOWED) -> str:
    """The entry of ``allowed`` covering ``scope`` (a top-level function or class) of
    ``module``: ``module:scope``, the module or a package above it; empty when none does."""
    if f"{module}:{scope}" in allowed:
        return f"{module}:{scope}"
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in allowed:
            return ".".join(parts[:i])
    return ""


def test_only_the_run_flows_hold_the_root_config():
    offenders, used = [], set()
    for module, scope, what in every_use():
        entry = allowed_by(module, scope)
        if entry:
            used.add(entry)
        else:
            offenders.append(f"{module}:{scope or '<module>'} {what}")
    assert not offenders, ("Below the run flows, components take their own section or plain "
                           "arguments, not the root config:\n" + "\n".join(offenders))
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"ALLOWED entries that no longer hold the root config (remove): {stale}"


def test_the_finder_sees_imports_reads_and_tells_sections_from_the_root():
    source = '''
from uda_reid.config import Config, ConfigError
from uda_reid.config.io import load_config
from uda_reid.config.sections.model import ModelConfig
from uda_reid.models import build_model

def build(cfg):
    return cfg.MODEL.HEADS.NAME

def train(run):
    return build_model(run, 3), partial(evaluate_from_config, run)

class Step:
    def run(self):
        return self.cfg.SOLVER.BASE_LR, self.cfg.SEED

def from_config(opts: ModelConfig, adapt):
    return opts.HEADS.NAME, adapt.SOLVER.BASE_LR, adapt.CLUSTER.SEED
'''
    found = find_root_config_uses(source)
    assert found == [("", "line 2: imports Config from uda_reid.config"),
                     ("", "line 3: imports load_config from uda_reid.config.io"),
                     ("build", "line 8: reads cfg.MODEL"),
                     ("train", "line 11: uses the entry point build_model"),
                     ("train", "line 11: uses the entry point evaluate_from_config"),
                     ("Step", "line 15: reads self.cfg.SOLVER"),
                     ("Step", "line 15: reads self.cfg.SEED")]


def test_allow_list_entries_cover_a_package_a_module_or_one_function():
    allowed = {"uda_reid.adapt": "", "uda_reid.models.reid_model:build_model": ""}
    assert allowed_by("uda_reid.adapt.methods.ecn", "ECN", allowed) == "uda_reid.adapt"
    assert allowed_by("uda_reid.adapt", "", allowed) == "uda_reid.adapt"
    assert allowed_by("uda_reid.models.reid_model", "build_model", allowed) == \
        "uda_reid.models.reid_model:build_model"
    assert allowed_by("uda_reid.models.reid_model", "ReIDModel", allowed) == ""
    assert allowed_by("uda_reid.adaptx", "", allowed) == ""
