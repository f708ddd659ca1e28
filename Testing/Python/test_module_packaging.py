"""The Qt layer cannot run here, so its contract is checked statically: the .ui file, the names the widget code
uses, the parameter-node bindings, the CMake script lists and the ExtensionsIndex description."""
import ast
import fnmatch
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from ODERegistrationLib.engine.parameters import defaults, specs

REPOSITORY = Path(__file__).resolve().parents[2]
MODULE = REPOSITORY / "ODERegistration"
UI_FILE = MODULE / "Resources" / "UI" / "ODERegistration.ui"
MODULE_FILE = MODULE / "ODERegistration.py"
KNOWN_CLASSES = {
    "QWidget", "QLabel", "QPushButton", "QCheckBox", "QComboBox", "QSpinBox", "QDoubleSpinBox", "QProgressBar",
    "QPlainTextEdit", "ctkCollapsibleButton", "qMRMLNodeComboBox", "qMRMLWidget",
}


def ui_widgets() -> dict:
    return {widget.get("name"): widget.get("class") for widget in ElementTree.parse(UI_FILE).iter("widget")}


def test_every_widget_the_code_uses_exists_with_a_real_class():
    widgets = ui_widgets()
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text(encoding="utf-8")))
    assert used, "the widget code uses no .ui names?"
    missing = used - set(widgets)
    assert not missing, f"used in ODERegistration.py but not in the .ui: {sorted(missing)}"
    unknown = {name: cls for name, cls in widgets.items() if cls not in KNOWN_CLASSES}
    assert not unknown, f"widgets of classes that are not Qt/CTK/Slicer classes: {unknown}"


def parameter_node_class() -> ast.ClassDef:
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ODERegistrationParameterNode")


def test_parameter_bindings_are_the_parameter_node_and_every_engine_parameter():
    """The node declares its MRML nodes; every engine parameter is added from the engine's dataclass and must be
    bound to exactly one widget (the presets, filled from the preset files, are not bound)."""
    declared = {item.target.id for item in parameter_node_class().body if isinstance(item, ast.AnnAssign)}
    bound = [prop.findtext("string") for prop in ElementTree.parse(UI_FILE).iter("property")
             if prop.get("name") == "SlicerParameterName"]
    assert len(bound) == len(set(bound))
    assert set(bound) == (declared - {"preset", "sequencePreset"}) | set(specs())
    assert not declared & set(specs()), "an engine parameter declared a second time in the module"


def enclosing_sections(tree: ElementTree.ElementTree) -> dict:
    """Each widget's name -> the name of the innermost collapsible section holding it (None outside any)."""
    sections = {}

    def visit(element, section):
        for child in element:
            if child.tag == "widget":
                sections[child.get("name")] = section
                if child.get("class") == "ctkCollapsibleButton":
                    visit(child, child.get("name"))
                    continue
            visit(child, section)
    visit(tree.getroot(), None)
    return sections


def test_every_engine_parameter_widget_shows_its_default_range_choices_and_help():
    """Before a parameter node exists the panel shows the .ui's values: they must be the engine's, and so must
    each widget's row label and its section (Advanced or not)."""
    tree = ElementTree.parse(UI_FILE)
    sections = enclosing_sections(tree)
    row_labels = {widget.get("name"): widget.findtext("property[@name='text']/string")
                  for widget in tree.iter("widget") if widget.get("class") == "QLabel"}
    checked = set()
    for widget in tree.iter("widget"):
        properties = {prop.get("name"): prop for prop in widget.findall("property")}
        name = properties.get("SlicerParameterName")
        name = name.findtext("string") if name is not None else None
        if name not in specs():
            continue
        spec, default = specs()[name], defaults()[name]
        assert spec.help[1:] in properties["toolTip"].findtext("string"), name
        assert row_labels.get(widget.get("name") + "Label") == spec.label + ":", name
        assert (sections[widget.get("name")] == "advancedCollapsibleButton") == spec.advanced, name
        if spec.choices:
            offered = [item.find("property").findtext("string") for item in widget.findall("item")]
            assert widget.get("class") == "QComboBox" and offered == list(spec.choices), name
            assert offered[0] == default or name == "region" and default in offered, name
        else:
            number = (lambda key: float(next(iter(properties[key])).text))
            assert widget.get("class") == ("QSpinBox" if isinstance(default, int) else "QDoubleSpinBox"), name
            assert (number("minimum"), number("maximum"), number("value")) == (spec.minimum, spec.maximum, default), name
            if "decimals" in properties:  # every value of the range must be representable
                assert round(spec.minimum, int(number("decimals"))) == spec.minimum, name
        checked.add(name)
    assert checked == set(specs())


def test_the_module_keeps_its_parameter_node_when_the_user_leaves_it():
    """exit() used to drop the parameter node while a job ran: its outputs were then lost."""
    widget = next(n for n in ast.parse(MODULE_FILE.read_text(encoding="utf-8")).body
                  if isinstance(n, ast.ClassDef) and n.name == "ODERegistrationWidget")
    exit_method = next(n for n in widget.body if isinstance(n, ast.FunctionDef) and n.name == "exit")
    calls = {node.func.attr for node in ast.walk(exit_method) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute)}
    assigned = {target.attr for node in ast.walk(exit_method) if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Attribute)}
    assert "setParameterNode" not in calls and "_parameterNode" not in assigned
    assert "disconnectGui" in calls


def test_the_module_logic_class_gives_slicer_the_module_name():
    """Slicer derives a module's name from its logic class name minus 'Logic': ODERegistrationParameterLogic
    made it look for a module 'ODERegistrationParameter'."""
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    logic_classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)
                     and any(getattr(base, "id", None) == "ScriptedLoadableModuleLogic" for base in n.bases)]
    assert logic_classes == ["ODERegistrationLogic"]


def test_the_out_of_memory_advice_names_only_options_that_exist():
    import torch

    from ODERegistrationLib.cli.main import build_parser
    from ODERegistrationLib.engine.core.device import out_of_memory_message

    message = out_of_memory_message(torch.device("cuda"), (256, 256, 256))
    named = set(re.findall(r"--[a-z0-9-]+", message))
    register = build_parser()._subparsers._group_actions[0].choices["register"]
    assert named and named <= {flag for action in register._actions for flag in action.option_strings}


def test_node_selectors_follow_the_scene():
    widgets = ui_widgets()
    receivers = {connection.findtext("receiver") for connection in ElementTree.parse(UI_FILE).iter("connection")
                 if connection.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert receivers == {name for name, cls in widgets.items() if cls == "qMRMLNodeComboBox"}


def test_cmake_lists_every_python_file_and_resource():
    listed = set(re.findall(r"^\s+(\S+\.(?:py|ui|png|nii\.gz|md|json))\s*$", (MODULE / "CMakeLists.txt").read_text(), re.M))
    listed = {entry.replace("${MODULE_NAME}", "ODERegistration") for entry in listed}
    on_disk = {str(path.relative_to(MODULE)) for path in MODULE.rglob("*")
               if path.is_file() and path.suffix != ".txt"
               and not any(part == "__pycache__" or part.endswith(".egg-info") for part in path.parts)}
    assert listed == on_disk


def test_a_wheel_carries_every_data_file_the_package_reads():
    """`pip install .` (not `-e`) installs the package with its package data only: the presets, kept outside it in
    Resources/Presets, were missing, and every command ended in a traceback ("no such preset (shipped: )")."""
    import tomllib

    from ODERegistrationLib.engine.presets import SHIPPED_PRESETS

    package_data = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    root = MODULE / "ODERegistrationLib"
    for path in root.rglob("*"):
        if not path.is_file() or path.suffix in (".py", ".pyc"):
            continue
        owner = next(folder for folder in path.parents if (folder / "__init__.py").is_file())
        package = ".".join(owner.relative_to(MODULE).parts)
        relative = path.relative_to(owner).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in package_data.get(package, [])), relative
    assert SHIPPED_PRESETS.is_relative_to(root) and sorted(SHIPPED_PRESETS.glob("*.json"))


def test_extension_description_matches_cmake():
    description = json.loads((REPOSITORY / "extension.json").read_text())
    assert description["category"] == "Registration"
    assert description["build_dependencies"] == ["PyTorch"]
    assert set(description) <= {"$schema", "build_dependencies", "build_subdirectory", "category", "scm_revision",
                                "scm_type", "scm_url", "enabled", "tier"}
    cmake = (REPOSITORY / "CMakeLists.txt").read_text()
    assert "project(ODERegistration)" in cmake and "set(EXTENSION_DEPENDS PyTorch)" in cmake
    assert (REPOSITORY / "LICENSE").is_file() and (REPOSITORY / "Resources" / "Icons" / "ODERegistration.png").is_file()


def test_the_catalog_icon_and_screenshots_are_files_of_the_repository():
    """The Extensions Manager shows the icon and screenshots from these URLs on the main branch: a renamed or
    deleted picture would show as a broken image there, and nothing else would notice."""
    cmake = (REPOSITORY / "CMakeLists.txt").read_text()
    urls = re.findall(r'set\(EXTENSION_(?:ICONURL|SCREENSHOTURLS) "([^"]+)"\)', cmake)
    pictures = [url for value in urls for url in value.split()]
    assert len(pictures) >= 2
    prefix = "https://raw.githubusercontent.com/ODERegistration/SlicerODERegistration/main/"
    for url in pictures:
        assert url.startswith(prefix) and (REPOSITORY / url[len(prefix):]).is_file(), url


def test_module_file_imports_nothing_that_needs_torch_at_load_time():
    """Slicer's generic test loads the module without torch: what the module file imports at load time must not
    import torch."""
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    modules = {node.module for node in tree.body if isinstance(node, ast.ImportFrom)
               and node.module and node.module.startswith("ODERegistrationLib")}
    assert modules
    script = "import sys; " + "; ".join(f"import {m}" for m in sorted(modules)) + "; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=MODULE, check=True)
    assert result.stdout.strip() == "False"


def test_the_torch_core_reads_no_images_and_knows_no_pipeline():
    """engine/core is the method in torch alone: an import of SimpleITK, numpy, Slicer or the pipeline there would
    tie the method to file formats and geometry again."""
    core = MODULE / "ODERegistrationLib" / "engine" / "core"
    shared = {"..parameters", "..progress"}
    for path in sorted(core.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." * node.level + (node.module or "")]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                allowed = (top in sys.stdlib_module_names or top == "torch" or name in shared
                           or (name.startswith(".") and not name.startswith("..")))
                assert allowed, f"{path.name} imports {name}"
