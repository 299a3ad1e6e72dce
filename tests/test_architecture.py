"""The package's shape: one-way imports, no cycles, copyable technique files, and an
installed (non-editable) package that still finds its checkpoints and data."""

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "lwt"
CORE = {
    "lwt.data",
    "lwt.models",
    "lwt.train",
    "lwt.measure",
    "lwt.pareto",
    "lwt.cpu",
    "lwt.stats",
    "lwt.latency",
    "lwt._lookup",
}
# Technique units: a module, or a subpackage copied as one folder.
TECHNIQUES = {
    "lwt.pruning",
    "lwt.quantization",
    "lwt.deploy",
    "lwt.saturation",
    "lwt.lowrank",
    "lwt.transfer",
    "lwt.distill",
    "lwt.sharing",
    "lwt.oneshot",
    "lwt.merging",
}
# Composition: a pipeline of several techniques (lesson 07), used by the recipes.
COMPOSITION = {"lwt.combine"}
LAYER = {"core": 0, "technique": 1, "composition": 2, "recipes": 3, "zoo": 4,
         "tools": 5}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The ``lwt`` modules a file imports (resolving relative imports)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lwt")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("lwt"):
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                found.add(sub if _exists(sub) else mod)
    return found - {name}


def _exists(mod: str) -> bool:
    p = ROOT / Path(*mod.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


GRAPH = {module_name(p): imports_of(p) for p in PKG.rglob("*.py")}


def unit(mod: str) -> str:
    """The unit a module belongs to: its technique subpackage, or itself."""
    for t in TECHNIQUES | {"lwt.models", "lwt.recipes", "lwt.exercises"}:
        if mod == t or mod.startswith(t + "."):
            return t
    return mod


def layer(mod: str) -> int:
    u = unit(mod)
    if u in CORE:
        return LAYER["core"]
    if u in TECHNIQUES:
        return LAYER["technique"]
    if u in COMPOSITION:
        return LAYER["composition"]
    if u == "lwt.recipes":
        return LAYER["recipes"]
    if u == "lwt.zoo":
        return LAYER["zoo"]
    if u in ("lwt.doctor", "lwt.student", "lwt.exercises"):  # tools for the course
        return LAYER["tools"]
    raise AssertionError(f"{mod}: give it a layer in tests/test_architecture.py")


def test_every_module_has_a_layer():
    for mod in GRAPH:
        if mod != "lwt":
            layer(mod)


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in GRAPH.get(m, ()):
            if n.startswith(m + ".") or m.startswith(n + "."):
                continue  # a package and its own modules
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack, m, n]))
            if not state.get(n):
                visit(n, [*stack, m])
        state[m] = 2

    for m in GRAPH:
        if not state.get(m):
            visit(m, [])


def test_imports_point_one_way():
    bad = []
    for mod, deps in GRAPH.items():
        if mod == "lwt":
            continue
        for dep in deps:
            if dep == "lwt" or unit(dep) == unit(mod):
                continue
            if layer(dep) >= layer(mod) and not (layer(mod) == 0 and layer(dep) == 0):
                bad.append(f"{mod} imports {dep}")
    assert not bad, bad


def test_technique_files_import_only_their_own_unit():
    for mod, deps in GRAPH.items():
        if unit(mod) in TECHNIQUES:
            assert all(unit(d) == unit(mod) for d in deps), (mod, deps)


COPY_CHECKS = {
    "pruning": """
        import torch
        from pruning import magnitude_prune, prune_filters, prune_resnet_blocks
        m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 2))
        magnitude_prune(m, 0.5)
        prune_filters(m, "0", "2", 0.5)
        assert m[0].out_features == 4

        class Block(torch.nn.Module):  # shaped like torchvision's BasicBlock
            def __init__(self):
                super().__init__()
                self.conv1 = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
                self.bn1 = torch.nn.BatchNorm2d(8)
                self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
                self.bn2 = torch.nn.BatchNorm2d(8)
                self.downsample = None

            def forward(self, x):
                y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
                return torch.relu(x + y)

        net = torch.nn.Sequential(Block()).eval()
        prune_resnet_blocks(net, 0.5)
        assert net[0].conv1.out_channels == 4
        assert net(torch.randn(1, 8, 6, 6)).shape == (1, 8, 6, 6)
    """,
    "quantization": """
        import torch
        from quantization import fake_quantize, quantize_model, calibrate
        x = torch.randn(16)
        assert fake_quantize(x, 0.1, 0, bits=4, symmetric=True).abs().max() <= 0.7
        m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
        q = calibrate(quantize_model(m), [torch.randn(8, 4)])
        assert q(torch.randn(2, 4)).shape == (2, 4)
    """,
    "lowrank.py": """
        import torch
        from lowrank import factorize, tucker2_conv
        m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 2))
        factorize(m, {"0": 4})
        assert m(torch.randn(2, 8)).shape == (2, 2)
        c = tucker2_conv(torch.nn.Conv2d(3, 4, 3), (2, 2))
        assert c(torch.randn(1, 3, 5, 5)).shape == (1, 4, 3, 3)
    """,
    "transfer": """
        import torch
        from transfer import CReLUConv2d, P4CNN, freeze, to_crelu
        m = CReLUConv2d(3, 8)
        assert m(torch.randn(2, 3, 5, 5)).shape == (2, 8, 5, 5)
        net = P4CNN(2).eval()
        x = torch.randn(1, 1, 28, 28)
        assert torch.allclose(net(torch.rot90(x, 1, (2, 3))), net(x), atol=1e-5)
        assert freeze(net)(x).shape == (1, 10)
    """,
    "distill.py": """
        import torch
        from distill import kd_loss, Distiller
        s, t = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
        kd = Distiller(s, t, T=4.0, alpha=0.9)
        x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
        assert kd.loss(kd(x), y).ndim == 0
    """,
    "sharing": """
        import torch
        from sharing import compress, decompress, share_weights, unshare
        m = torch.nn.Sequential(torch.nn.Linear(16, 8))
        unshare(share_weights(m, 2))
        state = decompress(compress(m))
        assert torch.equal(state["0.weight"], m[0].weight)
        assert m[0].weight.unique().numel() <= 4
    """,
    "deploy.py": """
        import deploy
        assert callable(deploy.export_onnx) and callable(deploy.top1_agreement)
    """,
    "saturation.py": """
        import numpy as np, onnx, torch
        from onnx import TensorProto, helper, numpy_helper
        from saturation import saturation_report
        w = np.array([[127, 127]], np.int8)
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
                 helper.make_node("DequantizeLinear", ["w", "s"], ["wd"]),
                 helper.make_node("Gemm", ["d", "wd"], ["y"], transB=1)]
        inits = [numpy_helper.from_array(np.array(1.0, np.float32), "s"),
                 numpy_helper.from_array(np.array(0, np.uint8), "z"),
                 numpy_helper.from_array(w, "w")]
        g = helper.make_graph(nodes, "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])], inits)
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                  "g.onnx")
        (row,) = saturation_report("g.onnx", [torch.full((1, 2), 255.0)])
        assert row["max_pair"] == 64770 and row["saturating"] == 1
    """,
}


# Distributions a copied unit must not need (issue 29): every one is blocked in the
# check's process (``sys.modules[name] = None`` makes ``import name`` fail), except
# those the README's "what to copy" table lists for the unit.
OTHERS = ("lwt", "torchvision", "numpy", "onnx", "onnxruntime", "onnxscript",
          "openvino", "tensorly", "matplotlib", "scipy")  # fmt: skip
NEEDS = {"sharing": {"numpy"}, "deploy.py": {"numpy", "onnx", "onnxruntime",
                                              "onnxscript"},
         "saturation.py": {"numpy", "onnx", "onnxruntime"}}  # fmt: skip


@pytest.mark.parametrize("unit_name", sorted(COPY_CHECKS))
def test_technique_runs_when_copied_alone(tmp_path, unit_name):
    src = PKG / unit_name
    if src.is_dir():
        shutil.copytree(src, tmp_path / unit_name)
    else:
        shutil.copy(src, tmp_path / unit_name)
    script = tmp_path / "check.py"
    blocked = sorted(set(OTHERS) - NEEDS.get(unit_name, set()))
    header = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')  # torch warns that numpy is missing\n"
        f"for _name in {blocked!r}:\n"
        "    sys.modules[_name] = None\n"
    )
    script.write_text(header + textwrap.dedent(COPY_CHECKS[unit_name]))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    # -I would drop PYTHONPATH; -s and a foreign cwd keep the lwt checkout out of reach
    run = subprocess.run(
        [sys.executable, "-s", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_non_editable_install_finds_checkpoints_and_data_dir(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    if build.returncode:
        pytest.skip(f"pip could not build the package here: {build.stderr[-500:]}")
    assert (target / "lwt" / "checkpoints" / "manifest.json").is_file()
    script = textwrap.dedent("""
        import os, pathlib, lwt, lwt.data, lwt.zoo
        assert "site" in lwt.__file__, lwt.__file__
        m = lwt.zoo.load_pretrained("lenet300")
        for name, entry in lwt.zoo.read_manifest().items():  # every shipped file
            assert (lwt.zoo.checkpoint_dir() / entry["file"]).is_file(), name
            if "deployed" in entry:
                lwt.zoo.deployed_path(name)  # present and sha256-checked
        assert lwt.data.data_root() == pathlib.Path(os.environ["LWT_DATA_DIR"])
        print(type(m).__name__)
    """)
    env = {k: v for k, v in os.environ.items() if k != "LWT_CHECKPOINT_DIR"}
    env.update(PYTHONPATH=str(target), LWT_DATA_DIR=str(tmp_path / "somewhere"))
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "LeNet300100"


def test_every_subpackage_is_installed():
    """pyproject.toml lists packages explicitly: a new folder must be added there."""
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(
        re.findall(r'"(lwt[\w.]*)"', text.split("packages = [")[1].split("]")[0])
    )
    folders = {
        module_name(p.parent)
        for p in PKG.rglob("__init__.py")
        if "__pycache__" not in str(p)
    }
    assert folders <= listed, sorted(folders - listed)


def test_no_recipe_imports_another_recipes_private_names():
    """Issue 29: combined imported filters' private _blocks."""
    for path in (PKG / "recipes").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level
                and node.module not in (None, "_common")
            ):
                names = [a.name for a in node.names]
                assert not any(n.startswith("_") for n in names), (path.name, names)


def test_tests_mirror_the_units_they_test():
    """A technique folder's tests live in ``tests/<folder>/``, a one-file technique's
    in ``tests/test_<file>.py``: a reader who copies a unit can take its tests."""
    tests = Path(__file__).parent
    for unit_name in sorted(TECHNIQUES):
        leaf = unit_name.split(".")[-1]
        if (PKG / leaf).is_dir():
            assert list((tests / leaf).glob("test_*.py")), f"tests/{leaf}/ is missing"
        else:
            assert (tests / f"test_{leaf}.py").is_file(), f"tests/test_{leaf}.py"
