"""Lean, lazy imports and the package graph: what each import pulls in, public names, downward-only imports."""

from __future__ import annotations

import ast
import graphlib
import importlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

import gliomaseg

PACKAGES = [
    "gliomaseg",
    "gliomaseg.data",
    "gliomaseg.training",
    "gliomaseg.evaluation",
    "gliomaseg.inference",
    "gliomaseg.exploration",
    "gliomaseg.study",
    "gliomaseg.radiogenomics",
]
SRC = Path(gliomaseg.__file__).resolve().parent

# The training stack an ONNX-only deployment must not need.
TRAINING_STACK = {"lightning", "pytorch_lightning", "lightning_fabric", "sklearn", "albumentations"}


def _top_level_modules_after(code: str) -> set[str]:
    """Run ``code`` in a fresh interpreter; the top-level names of the modules it left in ``sys.modules``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {name.split(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}


# ------------------------------------------------------------------------------- what an import loads
@pytest.mark.parametrize(
    "code",
    [
        "import gliomaseg.inference",
        # the whole ONNX-only deployment: load the export and segment a volume
        "import numpy as np\nfrom gliomaseg.inference import Segmenter\n"
        "Segmenter.from_onnx({onnx!r}).predict_volume(np.zeros((2, 64, 64, 3), np.uint8))",
    ],
    ids=["import", "onnx-predict"],
)
def test_inference_does_not_import_the_training_stack(code: str, onnx_file: Path) -> None:
    loaded = _top_level_modules_after(code.format(onnx=str(onnx_file)))
    assert "gliomaseg" in loaded
    assert not loaded & TRAINING_STACK


def test_import_gliomaseg_is_lazy() -> None:
    loaded = _top_level_modules_after("import gliomaseg\nnames = dir(gliomaseg)\nassert 'Segmenter' in names")
    assert not loaded & {"torch", "lightning", "pytorch_lightning"}


def test_version_is_the_installed_metadata() -> None:
    assert gliomaseg.__version__ == importlib.metadata.version("gliomaseg")


@pytest.mark.parametrize("package", PACKAGES)
def test_public_names_resolve_and_are_listed(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__ and set(module.__all__) <= set(dir(module))
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018


def _exports(init: Path) -> dict[str, str]:
    """The ``_EXPORTS`` table (name -> defining module) of a package ``__init__``, read without importing it."""
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"


def _type_checking_imports(init: Path) -> dict[str, str]:
    """Name -> module of the imports under ``if TYPE_CHECKING:`` (what editors and type checkers see)."""
    names: dict[str, str] = {}
    for node in ast.parse(init.read_text()).body:
        if _is_type_checking_block(node):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    names.update({alias.asname or alias.name: stmt.module for alias in stmt.names})
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_type_checking_block_mirrors_the_lazy_exports(package: str) -> None:
    init = SRC.joinpath(*package.split(".")[1:], "__init__.py")
    assert _type_checking_imports(init) == _exports(init)


# ------------------------------------------------------------------------------ downward-only imports
#: The layers, lowest first: a module may import its own layer and those below, never above.
#: data <- training <- evaluation (metrics, figures, html, markdown, plan) <- inference <- evaluate()
#: <- exploration/study/web <- radiogenomics <- cli. A module takes the layer of its longest listed prefix.
LAYERS = {
    "gliomaseg": 0,  # the package itself only: __version__ and lazy re-exports
    "gliomaseg._lazy": 0,
    "gliomaseg.errors": 0,
    "gliomaseg.utils": 0,
    "gliomaseg.devices": 0,  # device and precision choice: torch only
    "gliomaseg.checkpoint": 0,  # the model file format, which training writes and inference reads
    "gliomaseg.data": 1,
    # TrainConfig holds the PostprocessConfig that model files store, so these settings sit below
    # training although the module lives in evaluation/ (it imports only errors and utils).
    "gliomaseg.evaluation.postprocess": 2,
    "gliomaseg.evaluation.boxes": 2,  # post-processing's bounding box (NumPy only)
    "gliomaseg.training": 3,
    "gliomaseg.evaluation": 4,
    "gliomaseg.inference": 5,
    "gliomaseg.evaluation.evaluator": 6,
    "gliomaseg.exploration": 7,
    # the shift evaluation and the quality calibration sit beside evaluate(): they use inference
    "gliomaseg.evaluation.shifts": 6,
    "gliomaseg.evaluation.shift_eval": 6,
    "gliomaseg.evaluation.quality_calibration": 6,
    "gliomaseg.study": 7,
    "gliomaseg.web": 7,
    # Radiogenomics measures the out-of-fold masks of a study (gliomaseg.study.masks), never the reverse.
    "gliomaseg.radiogenomics": 8,
    "gliomaseg.cli": 9,
    "gliomaseg.__main__": 9,
}

#: Upward imports allowed inside a function only (importer, imported).
LAZY_EXCEPTIONS = {
    # A model file names its network; rebuilding it needs the model registry, imported on load.
    ("gliomaseg.checkpoint", "gliomaseg.training.models"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}
EXPORTS = {name: _exports(path) for name, path in MODULES.items() if path.name == "__init__.py"}


def _layer(module: str) -> int | None:
    if module == "gliomaseg":
        return LAYERS[module]
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        if ".".join(parts[:end]) in LAYERS:
            return LAYERS[".".join(parts[:end])]
    return None


def _resolve(base: str, name: str) -> str:
    """The module that ``from base import name`` loads: a submodule, a lazy export's module, or ``base``."""
    if f"{base}.{name}" in MODULES:
        return f"{base}.{name}"
    return EXPORTS.get(base, {}).get(name, base)


def _imports(module: str) -> list[tuple[str, bool]]:
    """``(imported gliomaseg module, inside a function)`` for every import statement of ``module``."""
    path = MODULES[module]
    return _imports_in(module, path.read_text(), is_package=path.name == "__init__.py")


def _imports_in(module: str, source: str, *, is_package: bool = False) -> list[tuple[str, bool]]:
    """``(imported gliomaseg module, inside a function)`` for every import statement of ``source``.

    Package ``__init__`` files skip their ``if TYPE_CHECKING:`` block: it mirrors the lazy exports
    (checked above) and runs only under a type checker. Other modules keep theirs: an annotation
    import is still a dependency, and a circle through one is a circle in the design.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if is_package and _is_type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.extend((_resolve(base, alias.name), in_function) for alias in node.names)
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), False)
    return [(name, lazy) for name, lazy in found if name == "gliomaseg" or name.startswith("gliomaseg.")]


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if _layer(m) is None] == [], "add the new package to LAYERS"


def test_modules_import_downward_only() -> None:
    upward = []
    for module in MODULES:
        for imported, lazy in _imports(module):
            if _layer(imported) is None or _layer(module) is None:
                continue  # reported by test_every_module_has_a_layer
            if _layer(imported) > _layer(module) and not (lazy and (module, imported) in LAZY_EXCEPTIONS):
                upward.append(f"{module} (layer {_layer(module)}) imports {imported} (layer {_layer(imported)})")
    assert upward == []


# ------------------------------------------------------------------------------------ no import circles
def _import_graph(imports: dict[str, list[tuple[str, bool]]]) -> dict[str, set[str]]:
    """Module -> the gliomaseg modules it imports, at the top or inside a function (both are edges)."""
    return {module: {name for name, _ in found if name != module} for module, found in imports.items()}


def _circle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of ``graph`` (``[a, b, ..., a]``), or ``[]`` when it has none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return []


GRAPH = _import_graph({module: _imports(module) for module in MODULES})

#: The import statements of the three exploration modules before issue 22, verbatim: the report a
#: function-level import, the figures a top-level one, the result type an annotation-only one.
_OLD_EXPLORE = {
    "gliomaseg.study.explore": "def explore_dataset():\n"
    "    from gliomaseg.study.explore_figures import draw_figures\n"
    "    from gliomaseg.study.explore_report import data_csv_table, write_reports\n",
    "gliomaseg.study.explore_figures": "from gliomaseg.study.explore import CHANNELS, head_mask, read_volume_rows\n"
    "from gliomaseg.study.explore_report import data_csv_columns, is_categorical\n",
    "gliomaseg.study.explore_report": "if TYPE_CHECKING:\n    from gliomaseg.study.explore import ExploreResult\n",
}


def test_no_module_imports_one_that_imports_it_back() -> None:
    circle = _circle(GRAPH)
    assert circle == [], "import circle: " + " -> ".join(circle) + " (move what both need into a module below them)"


def test_the_circle_check_catches_the_old_exploration_circle() -> None:
    old = _import_graph({module: _imports_in(module, source) for module, source in _OLD_EXPLORE.items()})
    circle = _circle(old)
    assert circle[0] == circle[-1] and {"gliomaseg.study.explore", "gliomaseg.study.explore_figures"} <= set(circle)
    # Function-level and annotation-only imports are edges too: without the figures' top-level import of
    # explore, or without explore's import of the figures, a circle remains.
    assert _circle({**old, "gliomaseg.study.explore_figures": {"gliomaseg.study.explore_report"}})
    assert _circle({**old, "gliomaseg.study.explore": {"gliomaseg.study.explore_report"}})


def test_exploration_modules_share_only_the_scan_module() -> None:
    """The split that removed the circle: figures and report build on ``scan``, only ``explore`` on them."""
    package = {m: GRAPH[m] & set(MODULES) for m in MODULES if m.startswith("gliomaseg.exploration.")}
    inside = {
        m: {i.rpartition(".")[2] for i in found if i.startswith("gliomaseg.exploration.")}
        for m, found in package.items()
    }
    assert inside == {
        "gliomaseg.exploration.explore": {"figures", "report", "scan"},
        "gliomaseg.exploration.figures": {"scan"},
        "gliomaseg.exploration.report": {"scan"},
        "gliomaseg.exploration.scan": set(),
    }
