"""A sweep name names a folder under multirun/, where every reader looks: it cannot take its runs out
of multirun/ nor leave them straight in it, where readers would take each run for a sweep."""

import pytest

from gmmvit.config.checks import check
from gmmvit.errors import ConfigError


@pytest.mark.parametrize("name", ["../../x", "a/../../b", "/tmp/elsewhere", "''", "' '", ".", "./", "a//b",
                                  "a/./b", "a/", "' /b'"])
def test_a_sweep_name_that_is_no_folder_under_multirun_is_refused_in_one_line(compose_config, tmp_path, name):
    cfg = compose_config([f"sweep={name}", "dataset=digits", "logger=none"], run_dir=tmp_path, data_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"a sweep lives inside multirun/; use sweep=NAME or sweep=GROUP/NAME"):
        check(cfg, machine=False)


def test_a_grouped_sweep_name_stays_allowed(compose_config, tmp_path):
    check(compose_config(["sweep=ablation/pooling", "dataset=digits", "logger=none"], run_dir=tmp_path,
                         data_dir=tmp_path), machine=False)
