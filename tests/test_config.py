from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from papersys.cli import app
from papersys.config import check_model_name, load_config
from papersys.errors import ConfigError


def test_defaults_work_without_a_file(lake_root: Path) -> None:
    config = load_config()
    assert config.source is None
    assert config.lake.root == lake_root
    assert config.lake.catalog_uri == f"ducklake:sqlite:{lake_root}/catalog.sqlite"
    assert config.embedding.models["minilm"].dim == 384
    assert config.ingestion.request_spacing == 3.0


def test_unknown_key_is_rejected_with_its_location(tmp_path: Path) -> None:
    file = tmp_path / "p.toml"
    file.write_text("[ingestion]\nrequest_spacin = 1\n")
    with pytest.raises(ConfigError, match=r"p\.toml: ingestion\.request_spacin: unknown key"):
        load_config(file)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[lake\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_relative_lake_root_is_relative_to_the_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PAPERSYS_LAKE_ROOT", raising=False)
    (tmp_path / "conf").mkdir()
    file = tmp_path / "conf" / "p.toml"
    file.write_text('[lake]\nroot = "mylake"\n')
    assert load_config(file).lake.root == tmp_path / "conf" / "mylake"
    monkeypatch.setenv("PAPERSYS_LAKE_ROOT", str(tmp_path / "env"))
    assert load_config(file).lake.root == tmp_path / "env"


def test_model_names_must_be_safe_table_suffixes(tmp_path: Path) -> None:
    assert check_model_name("jasper_v1") == "jasper_v1"
    for bad in ["Jasper", "1abc", "a-b", "a;drop table x", "", "a" * 64]:
        with pytest.raises(ConfigError):
            check_model_name(bad)
    file = tmp_path / "p.toml"
    file.write_text('[embedding.models.Bad-Name]\nmodel = "x"\ndim = 3\n')
    with pytest.raises(ConfigError, match="invalid model name 'Bad-Name'"):
        load_config(file)


def test_cli_config_check_and_show(lake_root: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "built-in defaults" in result.output
    shown = runner.invoke(app, ["config", "show"])
    assert shown.exit_code == 0
    round_trip = tmp_path / "round.toml"
    round_trip.write_text(shown.output)
    assert load_config(round_trip).embedding.models["minilm"].dim == 384


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path: Path, lake_root: Path) -> None:
    file = tmp_path / "p.toml"
    file.write_text("[lake]\nnope = 1\n")
    result = CliRunner().invoke(app, ["--config", str(file), "config", "check"])
    assert result.exit_code == 2
    assert "lake.nope: unknown key" in result.output
    assert "Traceback" not in result.output
