import pytest

from buildtool import config
from buildtool.errors import ConfigError

from ..conftest import write_project


def load_with(tmp_path, old, new):
    path = write_project(tmp_path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return lambda: config.load(path)


def test_loads_into_frozen_dataclasses(project):
    loaded = config.load(project)
    assert [i.name for i in loaded.images] == ["base", "download", "training", "upload"]
    assert loaded.steps == {"download_training_dataset": "download", "training": "training", "upload_model": "upload"}
    assert loaded.image("training").build_args == (("EXTRA", "1"),)
    assert loaded.repository_for(loaded.image("training")) == "127.0.0.1:5000/t/training"
    with pytest.raises(AttributeError):
        loaded.registry = "x"  # frozen


def test_overrides_win_over_the_file(project):
    loaded = config.load(project, registry="reg.example.com:443", base_image="python:3.11-slim")
    assert loaded.registry == "reg.example.com:443" and loaded.base_image == "python:3.11-slim"


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ('repository = "t"', 'repositry = "t"', "repositry: unknown key; did you mean 'repository'?"),
        ('step = "training"', 'stpe = "training"', "images.training.stpe: unknown key; did you mean 'step'?"),
        ('repository = "t"', "repository = 3", "repository: expected a string, got int 3"),
        ('context = "images/upload"', 'context = "images/nope"', "images.upload.context: folder"),
        (
            'base = "base"\nstep = "training"',
            'base = "bsae"\nstep = "training"',
            "no image named 'bsae'; did you mean 'base'?",
        ),
        ('build_args = { EXTRA = "1" }', 'build_args = { HF_TOKEN = "x" }', "build_args.HF_TOKEN: looks like a secret"),
        ('build_args = { EXTRA = "1" }', "build_args = { EXTRA = 1 }", "build_args.EXTRA: expected a string"),
        ('step = "upload_model"', 'step = "training"', "step 'training' is already served by image 'training'"),
        (
            'pipeline = "pipeline.training_pipeline:make_pipeline"',
            'pipeline = "nocolon"',
            "pipeline: 'nocolon' is not 'module:function'",
        ),
        (
            'registry = "127.0.0.1:5000"',
            'registry = "127.0.0.1:5000"\nimage_pull_policy = "Sometimes"',
            "image_pull_policy",
        ),
        (
            'registry = "127.0.0.1:5000"',
            'registry = "127.0.0.1:5000"\npush_with = "buildtool"',
            "push_with: 'buildtool' is not one of auto, skopeo, engine",
        ),
        (
            'registry = "127.0.0.1:5000"',
            'registry = "127.0.0.1:5000"\ncompression_level = 0',
            "compression_level: 0 is not a gzip level from 1 (fastest) to 9 (smallest)",
        ),
        (
            'registry = "127.0.0.1:5000"',
            'registry = "127.0.0.1:5000"\ncompression_level = true',
            "compression_level: True",
        ),
        (
            'registry = "127.0.0.1:5000"',
            'registry = "127.0.0.1:5000"\ncompression_level = "6"',
            "compression_level: expected an integer, got str '6'",
        ),
    ],
)
def test_bad_config_names_file_key_and_fix(tmp_path, old, new, expected):
    load = load_with(tmp_path, old, new)
    with pytest.raises(ConfigError) as caught:
        load()
    message = str(caught.value)
    assert expected in message
    assert str(tmp_path / "pyproject.toml") in message
    assert "\n" not in message


def test_missing_dockerfile_is_named(project):
    (project.parent / "images" / "upload" / "Dockerfile").unlink()
    with pytest.raises(ConfigError, match=r"images\.upload\.dockerfile: no Dockerfile at .*images/upload/Dockerfile"):
        config.load(project)


def test_cycle_is_refused(tmp_path):
    load = load_with(
        tmp_path,
        '[tool.buildtool.images.base]\ncontext = "images/base"',
        '[tool.buildtool.images.base]\ncontext = "images/base"\nbase = "upload"',
    )
    with pytest.raises(ConfigError, match="cycle: base -> upload -> base"):
        load()


def test_missing_file_and_table(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "pyproject.toml")
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    with pytest.raises(ConfigError, match=r"no \[tool.buildtool\] table"):
        config.load(tmp_path / "pyproject.toml")
    (tmp_path / "pyproject.toml").write_text("[tool.buildtool\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(tmp_path / "pyproject.toml")


def test_select_keeps_dependencies(project):
    loaded = config.load(project)
    assert [i.name for i in config.select(loaded, ["training"]).images] == ["base", "training"]
    with pytest.raises(ConfigError, match="did you mean 'training'"):
        config.select(loaded, ["trainig"])


def test_the_repository_config_loads():
    from ..conftest import REPO

    loaded = config.load(REPO / "pyproject.toml")
    assert set(loaded.steps) == {"download_training_dataset", "training", "upload_model"}
