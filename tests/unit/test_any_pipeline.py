"""An ordinary kfp v1 pipeline of another project: the real kfp compiler, no engine.

Steps are recognised by their component (a reused step, one inside a condition or a loop, a task with
a display name), the factory takes the map alone, a third-party image passes only pinned and listed,
and a pipeline.yaml older than its step functions is caught.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from buildtool import cli, config
from buildtool.errors import CompileError, ConfigError, StalePipelineError
from buildtool.gate import kfp_compile, verify
from buildtool.lock import freshness

from ..helpers import EXTERNAL, write_lock

ORDINARY = Path(__file__).resolve().parents[1] / "fixtures" / "ordinary"
REPORT = "127.0.0.1:5000/thirdparty/report"
REPORT_PIN = f"{REPORT}@sha256:{'7' * 64}"


def ordinary(root: Path, *, report: str = REPORT_PIN, external: str = REPORT) -> Path:
    """A copy of tests/fixtures/ordinary under `root`; returns its pyproject.toml."""
    shutil.copytree(ORDINARY, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    spec = root / "mypipe" / "report" / "component.yaml"
    spec.write_text(spec.read_text().replace("IMAGE", report))
    project = root / "pyproject.toml"
    text = project.read_text().replace("REGISTRY", "127.0.0.1:5000").replace("BASE", EXTERNAL)
    project.write_text(text.replace('"REPORT"', f'"{external}"' if external else ""))
    return project


def run(project: Path, *args: str) -> int:
    return cli.main(["--config", str(project), *args])


def templates(path: Path) -> dict[str, Any]:
    return {t["name"]: t for t in yaml.safe_load(path.read_text())["spec"]["templates"]}


def test_reused_conditional_looped_and_renamed_steps_compile_and_verify(tmp_path, capsys):
    project = ordinary(tmp_path)
    loaded, lock = write_lock(project)
    assert loaded.repository == "ordinary-pipeline" and loaded.repository_from == "[project].name"
    assert run(project, "compile") == 0
    found = templates(loaded.output)
    assert {"prepare", "prepare-2", "train", "train-2", "report"} <= set(found)
    steps = verify.template_steps(yaml.safe_load(loaded.output.read_text()), lock.steps)
    assert steps == {"prepare": "prepare", "prepare-2": "prepare", "train": "train", "train-2": "train"}
    for name, step in steps.items():
        assert found[name]["container"]["image"] == lock.steps[step]
    assert found["report"]["container"]["image"] == REPORT_PIN
    # buildtool's pull policy reaches every container, the third-party one included, with no keyword.
    assert {t["container"]["imagePullPolicy"] for t in found.values() if "container" in t} == {"IfNotPresent"}
    assert found["prepare-2"]["metadata"]["labels"]["team"] == "ml"
    assert run(project, "verify", "--offline") == 0
    assert run(project, "check") == 0
    assert "is what compile makes from them" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("report", "external", "fragment"),
    [
        (REPORT_PIN, "", f"template report: container.image: {REPORT_PIN} serves no step of the image map"),
        (f"{REPORT}:1.0", REPORT, f"template report: container.image: {REPORT}:1.0 is not pinned by digest"),
        (f"127.0.0.1:5000/other/report@sha256:{'7' * 64}", REPORT, "its repository listed in external_images"),
    ],
)
def test_a_third_party_image_passes_only_pinned_and_listed(tmp_path, capsys, report, external, fragment):
    project = ordinary(tmp_path, report=report, external=external)
    write_lock(project)
    assert run(project, "compile") == CompileError.exit_code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err
    assert not (tmp_path / "pipeline.yaml").exists()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('["127.0.0.1:5000/thirdparty/report:1.0"]', "names a tag or digest; list the repository only"),
        (f'["{REPORT_PIN}"]', "names a tag or digest"),
        ('["127.0.0.1:5000/ordinary-pipeline/prepare"]', "where buildtool pushes its own images"),
        ('["Not A Repo"]', "is not an image repository"),
        ("[1]", "external_images[0]: expected a string"),
        ('"127.0.0.1:5000/thirdparty/report"', "external_images: expected a list"),
    ],
)
def test_external_images_are_repositories_outside_buildtool_s_own(tmp_path, value, fragment):
    project = ordinary(tmp_path)
    project.write_text(project.read_text().replace(f'external_images = ["{REPORT}"]', f"external_images = {value}"))
    with pytest.raises(ConfigError, match="external_images") as caught:
        config.load(project)
    assert fragment in str(caught.value)


def test_repository_is_required_without_a_project_name(tmp_path, capsys):
    project = ordinary(tmp_path)
    project.write_text(project.read_text().replace('name = "Ordinary Pipeline"\n', ""))
    assert run(project, "check") == ConfigError.exit_code
    err = capsys.readouterr().err
    assert "[tool.buildtool] repository: missing, and no [project].name to derive it from" in err
    project.write_text(project.read_text().replace("[tool.buildtool]\n", '[tool.buildtool]\nrepository = "team/x"\n'))
    assert config.load(project).repository == "team/x" and config.load(project).repository_from == ""


def test_editing_a_step_body_makes_the_old_pipeline_stale_until_compiled_again(tmp_path, capsys):
    project = ordinary(tmp_path)
    loaded, lock = write_lock(project)
    assert run(project, "compile") == 0 and run(project, "check") == 0
    steps = tmp_path / "mypipe" / "steps.py"
    steps.write_text(steps.read_text().replace("return x / 2", "return x / 4"))
    capsys.readouterr()
    for command in (("check",), ("verify", "--offline"), ("compile", "--check")):
        assert run(project, *command) == StalePipelineError.exit_code == 13, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"{loaded.output} is stale: template train differs from what `buildtool compile` makes now" in err
    text = loaded.output.read_text()
    with pytest.raises(StalePipelineError, match="template train differs"):
        freshness.require_current_text(loaded, text, lock.steps, label="upload")
    assert run(project, "compile") == 0
    assert run(project, "check") == 0 and run(project, "verify", "--offline") == 0
    assert run(project, "compile", "--check") == 0
    freshness.require_current_text(loaded, loaded.output.read_text(), lock.steps, label="upload")


def test_a_hand_edit_with_the_digest_kept_is_caught_by_verify(tmp_path, capsys):
    """check trusts the recorded inputs digest (fast); verify compares with a fresh compile."""
    project = ordinary(tmp_path)
    loaded, _ = write_lock(project)
    assert run(project, "compile") == 0
    loaded.output.write_text(loaded.output.read_text().replace("[echo,", "[printf,"))
    assert run(project, "check") == 0
    assert run(project, "verify", "--offline") == 13
    assert "template report differs" in capsys.readouterr().err


def test_a_pipeline_without_the_recorded_digest_is_compared_in_full(tmp_path):
    project = ordinary(tmp_path)
    loaded, lock = write_lock(project)
    workflow = kfp_compile.create_workflow(loaded, lock.steps)
    assert freshness.recorded(workflow) is None
    freshness.require_current(loaded, workflow, lock.steps, label="x")
    workflow["spec"]["templates"] = workflow["spec"]["templates"][:-1]
    with pytest.raises(StalePipelineError, match="is missing"):
        freshness.require_current(loaded, workflow, lock.steps, label="x")


def test_extra_keywords_go_only_to_a_factory_that_declares_them(project):
    loaded = config.load(project)

    def bare(img_name_map): ...
    def policy(img_name_map, image_pull_policy="Always"): ...
    def both(img_name_map, *, credentials, image_pull_policy): ...
    def anything(img_name_map, **settings): ...

    assert kfp_compile.factory_keywords(bare, loaded) == {}
    assert kfp_compile.factory_keywords(policy, loaded) == {"image_pull_policy": "IfNotPresent"}
    expected = {"image_pull_policy": "IfNotPresent", "credentials": "parameters"}
    assert kfp_compile.factory_keywords(both, loaded) == expected
    assert kfp_compile.factory_keywords(anything, loaded) == expected


def test_a_library_named_like_the_pipeline_package_is_not_reloaded(tmp_path):
    """The project's modules are imported afresh; a library of the same top-level name stays loaded."""
    import sys

    import yaml as library

    project = ordinary(tmp_path)
    project.write_text(project.read_text().replace('steps_module = "mypipe.steps"', 'steps_module = "yaml"'))
    kfp_compile._fresh_import(config.load(project))
    assert sys.modules["yaml"] is library


def test_the_pull_policy_joins_the_pipeline_s_own_conf(tmp_path):
    """buildtool's transformer is added to the PipelineConf the pipeline set up; the pipeline's settings stay,
    and a policy the factory set on a task is buildtool's to decide."""
    project = ordinary(tmp_path)
    factory = tmp_path / "mypipe" / "pipeline.py"
    text = factory.read_text()
    text = text.replace(
        "        report_op(text=again.output)\n",
        "        report_op(text=again.output).set_image_pull_policy('Never')\n"
        "        conf = dsl.get_pipeline_conf()\n"
        "        conf.set_ttl_seconds_after_finished(60)\n"
        "        conf.add_op_transformer(lambda op: op.add_pod_annotation('owner', 'ml'))\n",
    )
    factory.write_text(text)
    policy = '[tool.buildtool]\nimage_pull_policy = "Always"\n'
    project.write_text(project.read_text().replace("[tool.buildtool]\n", policy))
    loaded, lock = write_lock(project)
    workflow = kfp_compile.create_workflow(loaded, lock.steps)
    containers = [t for t in workflow["spec"]["templates"] if "container" in t]
    assert len(containers) == 5
    assert {t["container"]["imagePullPolicy"] for t in containers} == {"Always"}
    assert {t["metadata"]["annotations"]["owner"] for t in containers} == {"ml"}
    assert workflow["spec"]["ttlStrategy"] == {"secondsAfterCompletion": 60}
