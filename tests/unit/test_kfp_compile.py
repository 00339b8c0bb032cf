"""gate/kfp_compile.py: the project's factory imported afresh from its folder, called with only the settings it
declares, compiled by kfp 1.8 in memory with buildtool's pull policy; each refusal names the setting and the fix."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import pytest
import yaml

from buildtool import config
from buildtool.errors import CompileError
from buildtool.gate import kfp_compile

from ..helpers import write_lock


def with_pipeline(project: Path, setting: str) -> config.Config:
    return dataclasses.replace(config.load(project), pipeline=setting)


@pytest.mark.parametrize(
    "module_text, setting, problem",
    [
        pytest.param(
            None, "absent_module:make", "cannot import 'absent_module': No module named 'absent_module'", id="no-module"
        ),
        pytest.param(
            "import absent_dependency\n",
            "broken:make",
            "cannot import 'broken': No module named 'absent_dependency'",
            id="import-fails",
        ),
        pytest.param("make = 3\n", "constant:make", "constant has no function 'make'", id="not-callable"),
        pytest.param("", "empty:make", "empty has no function 'make'", id="no-attribute"),
    ],
)
def test_a_factory_that_cannot_be_loaded_names_the_setting(project, module_text, setting, problem):
    module = setting.partition(":")[0]
    if module_text is not None:
        (project.parent / f"{module}.py").write_text(module_text)
    loaded = with_pipeline(project, setting)
    path_before = list(sys.path)
    with pytest.raises(CompileError) as caught:
        kfp_compile.load_factory(loaded)
    assert str(caught.value) == f"{loaded.path}: [tool.buildtool] pipeline: {problem}"
    assert sys.path == path_before  # the project folder is on the path only while importing


def test_a_loaded_factory_comes_from_the_project_folder_which_leaves_the_path(project):
    (project.parent / "factory_here.py").write_text("def make(img_name_map):\n    return sorted(img_name_map)\n")
    loaded = with_pipeline(project, "factory_here:make")
    path_before = list(sys.path)
    factory = kfp_compile.load_factory(loaded)
    assert factory({"b": "1", "a": "2"}) == ["a", "b"]
    assert sys.path == path_before and str(loaded.root) not in sys.path


def test_keywords_a_factory_cannot_take_by_name_are_not_offered(project):
    loaded = dataclasses.replace(config.load(project), image_pull_policy="Never", credentials="secret")

    def positional(img_name_map, image_pull_policy, /, credentials=None): ...

    assert kfp_compile.factory_keywords(positional, loaded) == {"credentials": "secret"}
    assert kfp_compile.factory_keywords(dict, loaded) == {}  # no signature to read: the map alone


# -- which modules are the project's (imported afresh) and which are libraries (left alone) ----------------------


@pytest.mark.parametrize(
    "module, library",
    [
        pytest.param(json, True, id="standard-library"),
        pytest.param(yaml, True, id="installed-distribution"),
        pytest.param(kfp_compile, True, id="buildtool-itself"),
        pytest.param(types.ModuleType("built_in_like"), False, id="no-file"),
    ],
)
def test_is_library(module, library):
    assert kfp_compile._is_library(module) is library


def test_a_project_module_is_not_a_library(project):
    module = types.ModuleType("pipeline")
    module.__file__ = str(project.parent / "pipeline" / "__init__.py")
    assert kfp_compile._is_library(module) is False


def test_fresh_import_forgets_the_project_packages_and_nothing_else(project, monkeypatch):
    loaded = dataclasses.replace(config.load(project), steps_module="mysteps.one")
    project_file = str(project.parent / "pipeline" / "__init__.py")
    planted = {
        "pipeline": types.ModuleType("pipeline"),
        "pipeline.training_pipeline": types.ModuleType("pipeline.training_pipeline"),
        "mysteps": types.ModuleType("mysteps"),
        "mysteps.one": types.ModuleType("mysteps.one"),
        "pipelinex": types.ModuleType("pipelinex"),
    }
    for name, module in planted.items():
        module.__file__ = project_file
        monkeypatch.setitem(sys.modules, name, module)
    kfp_compile._fresh_import(loaded)
    assert [name for name in planted if name in sys.modules] == ["pipelinex"]
    assert sys.modules["json"] is json


# -- the compiled workflow --------------------------------------------------------------------------------------


NAMED_FACTORY = """\
from kfp import dsl
from kfp.components import create_component_from_func


def training(epochs: int) -> None:
    print(epochs)


def make(img_name_map):
    op = create_component_from_func(training, base_image=img_name_map["training"])

    @dsl.pipeline(name="Nightly Training", description="One step.")
    def nightly(epochs: int = 3):
        op(epochs)

    return nightly
"""


def test_the_workflow_keeps_the_pipeline_s_name_and_parameters_and_renders_as_kfp_writes_it(project):
    """buildtool wraps the pipeline function to add its pull policy; kfp still sees the pipeline's own name,
    description and parameters."""
    (project.parent / "nightly.py").write_text(NAMED_FACTORY)
    loaded, lock = write_lock(project)
    loaded = dataclasses.replace(loaded, pipeline="nightly:make")
    workflow = kfp_compile.create_workflow(loaded, lock.steps)
    spec = json.loads(workflow["metadata"]["annotations"]["pipelines.kubeflow.org/pipeline_spec"])
    assert workflow["metadata"]["generateName"] == "nightly-training-"
    assert spec["name"] == "Nightly Training" and spec["description"] == "One step."
    assert workflow["spec"]["arguments"] == {"parameters": [{"name": "epochs", "value": "3"}]}
    (training,) = [t for t in workflow["spec"]["templates"] if "container" in t]
    assert training["container"]["image"] == lock.steps["training"]
    assert training["container"]["imagePullPolicy"] == loaded.image_pull_policy
    text = kfp_compile.render(workflow)
    assert yaml.safe_load(text) == workflow
    assert text.startswith("apiVersion: argoproj.io/v1alpha1\nkind: Workflow\n")


def test_the_factory_gets_a_copy_of_the_steps(project):
    """The factory may change the map it is given; the caller's steps stay as the lock says."""
    (project.parent / "mutating.py").write_text(
        "from pipeline.training_pipeline import make_pipeline as real\n\n\n"
        "def make(img_name_map, **settings):\n"
        "    pipeline = real(img_name_map, **settings)\n"
        "    img_name_map.clear()\n"
        "    return pipeline\n"
    )
    loaded, lock = write_lock(project)
    steps = dict(lock.steps)
    kfp_compile.create_workflow(dataclasses.replace(loaded, pipeline="mutating:make"), steps)
    assert steps == lock.steps


def test_an_entry_of_sys_modules_without_a_name_or_file_is_no_library():
    assert kfp_compile._is_library(object()) is False


@pytest.mark.parametrize("setting", ["flows:make", "flows:make:pipeline"])
def test_fresh_import_takes_the_factory_module_from_before_the_first_colon(project, monkeypatch, setting):
    loaded = dataclasses.replace(config.load(project), pipeline=setting)
    planted = types.ModuleType("flows")
    planted.__file__ = str(project.parent / "flows.py")
    monkeypatch.setitem(sys.modules, "flows", planted)
    kfp_compile._fresh_import(loaded)
    assert "flows" not in sys.modules


@pytest.mark.parametrize("library", ["yaml", "json", "os", "re", "io", "abc", "ast", "enum"])
def test_a_library_named_like_one_package_leaves_the_other_forgotten(project, monkeypatch, library):
    """The two packages are looked at one by one: keeping a library does not end the look at the other."""
    loaded = dataclasses.replace(config.load(project), pipeline=f"{library}:make", steps_module="mysteps.one")
    for name in ("mysteps", "mysteps.one"):
        planted = types.ModuleType(name)
        planted.__file__ = str(project.parent / "mysteps" / "one.py")
        monkeypatch.setitem(sys.modules, name, planted)
    kept = sys.modules[library] if library in sys.modules else __import__(library)
    kfp_compile._fresh_import(loaded)
    assert sys.modules[library] is kept
    assert "mysteps" not in sys.modules and "mysteps.one" not in sys.modules
