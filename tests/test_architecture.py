"""The architecture's rules hold in the code (ARCHITECTURE.md, "Folders and import rules").

Each package may import only the packages of lower layers (and the top-level ``intelliflow``
modules); leaves never import each other; nothing outside ``codec/`` asks what type a codec is.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# folder -> (import name, layer); a package may import packages of a strictly lower layer
PACKAGES = {
    "core": ("intelliflow", 0),
    "data": ("intelliflow.data", 1), "models": ("intelliflow.models", 1),
    "codec": ("intelliflow.codec", 1), "channels": ("intelliflow.channels", 1),
    "flow": ("intelliflow.flow", 2),
    "evaluation": ("intelliflow.evaluation", 3), "deploy": ("intelliflow.deploy", 3),
    "training": ("intelliflow.training", 4), "system": ("intelliflow.system", 4),
    "recipes": ("intelliflow.recipes", 5),
}
LAYER = {name: layer for name, layer in PACKAGES.values()}
CORE_MODULES = {f"intelliflow.{p.stem}" for p in (ROOT / "core").glob("*.py") if p.stem != "__init__"}


def imported_packages(path: Path) -> set[str]:
    """The intelliflow packages a source file imports (absolute imports; relative ones stay inside)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
        for name in names:
            if not name.startswith("intelliflow"):
                continue
            parts = name.split(".")
            package = ".".join(parts[:2])
            found.add("intelliflow" if package in CORE_MODULES or package == "intelliflow" else package)
    return found


def library_files():
    for folder in PACKAGES:
        yield from sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(PACKAGES))
def test_packages_import_only_lower_layers(folder):
    own, layer = PACKAGES[folder]
    if not (ROOT / folder).is_dir():
        pytest.skip(f"{folder}/ does not exist")
    for path in sorted((ROOT / folder).rglob("*.py")):
        for package in imported_packages(path) - {own}:
            assert package in LAYER, f"{path.relative_to(ROOT)} imports {package}, which is not a known package"
            assert LAYER[package] < layer, (f"{path.relative_to(ROOT)} (layer {layer}) imports {package} "
                                            f"(layer {LAYER[package]}): a package imports only lower layers")


def test_every_package_folder_is_installed_and_known():
    import configparser

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    mapping = dict(line.split("=") for line in setup["options"]["package_dir"].strip().splitlines())
    mapping = {name.strip(): folder.strip() for name, folder in mapping.items()}
    installed = setup["options"]["packages"].split()
    for folder, (name, _) in PACKAGES.items():
        if (ROOT / folder).is_dir():
            assert mapping.get(name) == folder and name in installed, f"{folder}/ is not installed as {name}"
    assert set(mapping.values()) <= set(PACKAGES), \
        f"setup.cfg maps folders the architecture does not name: {set(mapping.values()) - set(PACKAGES)}"


CODEC_CLASSES = {"FeatureCodec", "FactorizedFeatureCodec", "HyperpriorFeatureCodec", "JSCCCodec", "QuantizeCodec",
                 "IdentityCodec", "TextCodec", "ImageUploadCodec", "JpegUpload", "WebpUpload", "AvifUpload"}


def test_no_codec_type_checks_outside_codec():
    """Outside codec/, code reads a codec's declared interface (takes, sends, rate, learned), never
    its class or its attributes' presence."""
    offenders = []
    for path in library_files():
        if path.is_relative_to(ROOT / "codec"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
                checked = ast.unparse(node.args[1])
                if any(c in checked for c in CODEC_CLASSES):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} isinstance(..., {checked})")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr":
                if "codec" in ast.unparse(node.args[0]):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not offenders, "codec type checks outside codec/:\n" + "\n".join(offenders)
