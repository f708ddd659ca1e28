"""The Qt layer cannot run here, so its contract is checked statically: the .ui file, the names the widget code
uses, the parameter-node bindings, the CMake script lists and the ExtensionsIndex description."""
import ast
import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from ODERegistrationLib.engine.parameters import RegistrationParameters

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
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    assert used, "the widget code uses no .ui names?"
    missing = used - set(widgets)
    assert not missing, f"used in ODERegistration.py but not in the .ui: {sorted(missing)}"
    unknown = {name: cls for name, cls in widgets.items() if cls not in KNOWN_CLASSES}
    assert not unknown, f"widgets of classes that are not Qt/CTK/Slicer classes: {unknown}"


def test_parameter_bindings_match_the_parameter_node():
    tree = ast.parse(MODULE_FILE.read_text())
    node_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ODERegistrationParameterNode")
    fields = {item.target.id for item in node_class.body if isinstance(item, ast.AnnAssign)}
    bound = {prop.findtext("string") for prop in ElementTree.parse(UI_FILE).iter("property")
             if prop.get("name") == "SlicerParameterName"}
    assert bound == fields


def test_panel_shows_the_engine_defaults():
    """Before a parameter node exists the panel shows the .ui's values: they must be the measured defaults."""
    tree = ast.parse(MODULE_FILE.read_text())
    node_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ODERegistrationParameterNode")
    engine_names = {item.target.id: item.value.attr for item in node_class.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.value, ast.Attribute)}
    defaults = RegistrationParameters()
    checked = 0
    for widget in ElementTree.parse(UI_FILE).iter("widget"):
        properties = {prop.get("name"): prop for prop in widget.findall("property")}
        if "SlicerParameterName" not in properties or "value" not in properties:
            continue
        name = properties["SlicerParameterName"].findtext("string")
        shown = float(next(iter(properties["value"])).text)
        assert shown == float(getattr(defaults, engine_names[name])), name
        checked += 1
    assert checked >= 10


def test_node_selectors_follow_the_scene():
    widgets = ui_widgets()
    receivers = {connection.findtext("receiver") for connection in ElementTree.parse(UI_FILE).iter("connection")
                 if connection.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert receivers == {name for name, cls in widgets.items() if cls == "qMRMLNodeComboBox"}


def test_cmake_lists_every_python_file_and_resource():
    listed = set(re.findall(r"^\s+(\S+\.(?:py|ui|png|nii\.gz|md))\s*$", (MODULE / "CMakeLists.txt").read_text(), re.M))
    listed = {entry.replace("${MODULE_NAME}", "ODERegistration") for entry in listed}
    on_disk = {str(path.relative_to(MODULE)) for path in MODULE.rglob("*")
               if path.is_file() and path.suffix != ".txt"
               and not any(part == "__pycache__" or part.endswith(".egg-info") for part in path.parts)}
    assert listed == on_disk


def test_extension_description_matches_cmake():
    description = json.loads((REPOSITORY / "extension.json").read_text())
    assert description["category"] == "Registration"
    assert description["build_dependencies"] == ["PyTorch"]
    assert set(description) <= {"$schema", "build_dependencies", "build_subdirectory", "category", "scm_revision",
                                "scm_type", "scm_url", "enabled", "tier"}
    cmake = (REPOSITORY / "CMakeLists.txt").read_text()
    assert "project(ODERegistration)" in cmake and "set(EXTENSION_DEPENDS PyTorch)" in cmake
    assert (REPOSITORY / "LICENSE").is_file() and (REPOSITORY / "Resources" / "Icons" / "ODERegistration.png").is_file()


def test_module_file_imports_no_engine_code_at_load_time():
    """Slicer's generic test loads the module without torch: only the torch-free parameters may be imported."""
    tree = ast.parse(MODULE_FILE.read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    modules = {node.module for node in top_level if isinstance(node, ast.ImportFrom)}
    assert {m for m in modules if m and m.startswith("ODERegistrationLib")} == {"ODERegistrationLib.engine.parameters"}


def test_combo_boxes_offer_exactly_the_engine_choices():
    """A choice the engine gains (LNCC, a region mode) must appear in the panel, and the panel offers no other."""
    from ODERegistrationLib.engine.parameters import DEVICES, MODES, REGIONS, SIMILARITIES

    expected = {"similarity": set(SIMILARITIES), "mode": set(MODES), "device": set(DEVICES),
                "regionMode": set(REGIONS) | {"roi"}}
    offered = {}
    for widget in ElementTree.parse(UI_FILE).iter("widget"):
        if widget.get("class") != "QComboBox":
            continue
        name = next(prop.findtext("string") for prop in widget.findall("property")
                    if prop.get("name") == "SlicerParameterName")
        offered[name] = {item.find("property").findtext("string") for item in widget.findall("item")}
    assert offered == expected
