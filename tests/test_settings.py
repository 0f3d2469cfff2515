from pathlib import Path

import pytest

from app.core.settings import CONFIG_DIR, ProjectSettings, default_settings, load_settings
from app.core.strategies import STRATEGIES

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_configs_folder_has_presets():
    assert {p.name for p in CONFIGS} >= {"default.yaml", "demo.yaml", "gpu_finetune.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_parses_into_settings(path: Path):
    settings = load_settings(path)
    assert isinstance(settings, ProjectSettings)
    assert settings.strategy in STRATEGIES
    assert ProjectSettings.from_dict(settings.to_dict()) == settings


def test_default_yaml_matches_dataclass_defaults():
    assert default_settings() == ProjectSettings()


def test_unknown_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_sise: 5\n")
    with pytest.raises(ValueError, match="batch_sise"):
        load_settings(bad)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("batch_size", 0, "batch size"), ("val_fraction", 0.95, "validation"), ("mode", "turbo", "turbo")],
)
def test_invalid_values_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        ProjectSettings(**{field: value})
