"""The DARTS search's settings: one dataclass (nash.darts.config.SearchSettings) whose fields the
darts searcher's DartsConfig inherits; one set of defaults, checks and resumable fields."""
import dataclasses
import json

import pytest

from nash.darts import DEFAULTS, SearchConfigError, SearchSettings, search_config
from nash.errors import OptionError
from nash.search import DartsConfig, SearchConfig

SETTINGS = [f for f in dataclasses.fields(SearchSettings)]


def test_every_setting_has_one_default_and_help_which_darts_config_inherits():
    config_fields = {f.name: f for f in dataclasses.fields(DartsConfig)}
    for f in SETTINGS:
        assert f.default is not dataclasses.MISSING, f.name
        assert f.metadata.get("help", "").strip(), f.name  # the CLI's option help
        inherited = config_fields[f.name]
        assert inherited.default == f.default == DEFAULTS[f.name], f.name
        assert inherited.metadata["help"] == f.metadata["help"], f.name
    # and the searcher's own fields are documented too
    for name, f in config_fields.items():
        assert f.default is not dataclasses.MISSING and f.metadata.get("help"), name
    assert SearchSettings().layers is None and search_config({}).layers == 8  # None: the space's default


def test_one_resumable_set_for_the_config_and_the_checkpoint():
    names = {f.name for f in SETTINGS}
    may = set(DartsConfig.RESUME_MAY_CHANGE)
    assert may & names == set(SearchSettings.RESUME_MAY_CHANGE) == {"epochs"}
    assert set(SearchConfig.RESUME_MAY_CHANGE) <= may
    cfg = DartsConfig(channels=4, epochs=3)
    assert cfg.resumed_with({"epochs": 9, "budget": 60.0}).epochs == 9
    with pytest.raises(OptionError, match="channels"):
        cfg.resumed_with({"channels": 8})


def test_bad_settings_are_one_line_naming_the_setting_from_either_class():
    for bad, named in ((dict(channels=0), "channels"), (dict(w_lr=-1.0), "w_lr"), (dict(method="enas"), "method"),
                       (dict(order=2, method="nasp"), "order 2"), (dict(epochs="ten"), "epochs"),
                       (dict(augment="yes"), "augment"), (dict(layers=0), "layers"), (dict(seed=1.5), "seed")):
        for make in (SearchSettings, DartsConfig):
            with pytest.raises(SearchConfigError, match=named) as e:
                make(**bad)
            assert "\n" not in str(e.value)
    with pytest.raises(OptionError, match="train_epochs"):
        DartsConfig(train_epochs=0)
    with pytest.raises(OptionError, match="budget"):
        DartsConfig(budget=-1)  # the contract's checks still run after the settings'


def test_dict_and_dataclass_give_the_same_settings():
    given = dict(method="milenas", lam=0.5, channels=4, layers=3, epochs=2, seed=7)
    from_dict = search_config({**given, "data": "digits", "out": "somewhere"})  # other keys ignored
    assert from_dict == search_config(DartsConfig(**given, data="digits", budget=60.0))
    assert from_dict == SearchSettings.of(SearchSettings(**given))
    assert type(from_dict) is SearchSettings and from_dict.settings_dict()["lam"] == 0.5


def test_json_round_trip_and_an_old_run_directory_config():
    cfg = DartsConfig(method="darts", order=2, smooth="rs", w_lr=0.05, layers=None, space="nb201", budget=90.0)
    again = DartsConfig.from_json(json.loads(json.dumps(cfg.to_json())))
    assert again == cfg and again.layers is None
    # config.json of a run written before the settings were one dataclass (commit 830896d): the
    # settings it lacks take their defaults
    old = {"data": "digits", "data_dir": None, "subset": 300, "val_fraction": 0.1, "seed": 0, "budget": None,
           "device": "cpu", "method": "darts", "order": 1, "smooth": "none", "epsilon": 0.3, "lam": 1.0,
           "selector": "argmax", "pt_tune_epochs": 5, "pt_share": 0.5, "space": "darts", "track_hessian": False,
           "epochs": 1, "search_share": 0.5, "channels": 4, "layers": 2, "batch_size": 32, "train_epochs": 1,
           "train_channels": 4, "train_layers": 2, "train_batch_size": 64, "auxiliary": None, "drop_path": 0.2,
           "cutout": None}
    loaded = DartsConfig.from_json(old)
    assert loaded.channels == 4 and loaded.w_lr == DEFAULTS["w_lr"] and loaded.steps == DEFAULTS["steps"]
