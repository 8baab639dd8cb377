"""Specs for ``refine.config_loading``: YAML plus ``--section.key value`` overrides into the nested RefineConfig."""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass, field

import pytest

from refine.config import RefineConfig
from refine.config_loading import (
    DATA_DIR_ENV,
    ConfigError,
    config_from_dict,
    config_to_dict,
    describe_fields,
    load_config,
    merge,
    parse_overrides,
    read_yaml,
)


@pytest.fixture
def write_yaml(tmp_path):
    def write(text: str, name: str = "config.yaml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def data_dir(monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, "/mnt/corpora")
    return "/mnt/corpora"


class TestLoadYaml:
    def test_file_values_land_in_the_nested_config(self, write_yaml, data_dir):
        path = write_yaml(
            """\
            name: hatecheck-demo
            data:
              path: ${data_dir}/hatecheck/test_suite_cases.csv
              text_column: test_case
              label_columns: [label_gold]
              positive_values: [hateful]
              num_labeled: 40
            priors:
              method: direct
            train:
              loss: uu
              learning_rate: 1e-4   # YAML 1.1 reads this as the string "1e-4"
            loop:
              iterations: 2
            """
        )
        config = load_config(RefineConfig, path)
        assert config.name == "hatecheck-demo"
        assert config.output_dir == "runs/hatecheck-demo"  # derived in __post_init__
        assert config.data.path == "/mnt/corpora/hatecheck/test_suite_cases.csv"
        assert config.data.label_columns == ["label_gold"]
        assert config.data.positive_values == ["hateful"]
        assert config.data.num_labeled == 40
        assert config.priors.method == "direct"
        assert config.train.loss == "uu"
        assert config.train.learning_rate == 1e-4 and isinstance(config.train.learning_rate, float)
        assert config.loop.iterations == 2
        # Keys the file leaves out keep their defaults.
        assert config.train.gamma == -0.001
        assert config.data.test_fraction == 0.3

    def test_an_empty_file_gives_the_defaults(self, write_yaml):
        config = load_config(RefineConfig, write_yaml("# nothing but a comment\n"))
        assert config.name == "refine" and config.loop.iterations == 5
        assert config.data.path == ""  # no default corpus: load_corpus asks for data.path

    def test_no_file_at_all(self, data_dir):
        config = load_config(RefineConfig, None, ["--loop.iterations", "1", "--data.path", "${data_dir}/x.csv"])
        assert config.loop.iterations == 1
        assert config.data.path == "/mnt/corpora/x.csv"

    def test_data_dir_defaults_to_the_shared_folder(self, monkeypatch):
        monkeypatch.delenv(DATA_DIR_ENV, raising=False)
        config = config_from_dict(RefineConfig, {"data": {"path": "${data_dir}/davidson/labeled_data.csv"}})
        assert config.data.path == "../shared/data/davidson/labeled_data.csv"

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"config file .*nope\.yaml not found; pass an existing YAML file"):
            load_config(RefineConfig, tmp_path / "nope.yaml")

    def test_invalid_yaml_names_the_file(self, write_yaml):
        path = write_yaml("data:\n  path: [unclosed\n", name="broken.yaml")
        with pytest.raises(ConfigError, match=r"broken\.yaml is not valid YAML"):
            load_config(RefineConfig, path)

    @pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("[]\n", "list"), ("false\n", "bool")])
    def test_a_file_that_is_not_a_mapping(self, write_yaml, text, kind):
        # Even an empty list or `false` is refused: only an empty file means "all defaults".
        with pytest.raises(ConfigError, match=f"must hold a mapping of keys to values, got {kind}"):
            read_yaml(write_yaml(text))

    def test_config_to_dict_round_trips(self, write_yaml, data_dir):
        config = load_config(RefineConfig, None, ["--train.loss", "pn", "--data.num_labeled", "30"])
        assert config_from_dict(RefineConfig, config_to_dict(config)) == config


class TestParseOverrides:
    def test_space_and_equals_forms(self):
        assert parse_overrides(["--loop.iterations", "3", "--train.loss=pn"]) == {
            "loop": {"iterations": 3},
            "train": {"loss": "pn"},
        }

    def test_values_are_yaml_scalars(self):
        overrides = parse_overrides(
            ["--a.int", "3", "--a.float", "0.25", "--a.negative", "-0.01", "--a.bool", "false", "--a.null", "null",
             "--a.list", "[S, H, V]", "--a.empty="]
        )
        assert overrides == {
            "a": {"int": 3, "float": 0.25, "negative": -0.01, "bool": False, "null": None, "list": ["S", "H", "V"],
                  "empty": ""}
        }

    def test_bare_flags_are_true(self):
        # A flag followed by another flag, or by nothing, is a boolean switch.
        assert parse_overrides(["--overwrite_output_dir", "--loop.iterations", "2", "--x.y"]) == {
            "overwrite_output_dir": True,
            "loop": {"iterations": 2},
            "x": {"y": True},
        }

    def test_dashes_in_keys_become_underscores(self):
        assert parse_overrides(["--overwrite-output-dir=true"]) == {"overwrite_output_dir": True}

    def test_text_that_yaml_would_misread_stays_a_string(self):
        # "User: {prompt} ..." is a YAML syntax error and "Answer: yes" a mapping; both are meant as plain text.
        assert parse_overrides(["--data.template", "User: {prompt} Assistant: {response}",
                                "--annotator.instruction=Answer: yes"]) == {
            "data": {"template": "User: {prompt} Assistant: {response}"},
            "annotator": {"instruction": "Answer: yes"},
        }

    def test_a_broken_list_is_an_error(self):
        with pytest.raises(ConfigError, match=r"--data\.label_columns: '\[S, H' is not a valid YAML list or mapping"):
            parse_overrides(["--data.label_columns", "[S, H"])

    def test_a_positional_argument_is_refused(self):
        with pytest.raises(ConfigError, match=r"unexpected argument 'config\.yaml'; overrides look like --section"):
            parse_overrides(["config.yaml"])

    def test_a_value_cannot_become_a_section(self):
        with pytest.raises(ConfigError, match=r"--train\.loss: train is a value, not a section"):
            parse_overrides(["--train", "3", "--train.loss", "pn"])

    def test_overrides_win_over_the_file(self, write_yaml, data_dir):
        path = write_yaml(
            """\
            data:
              num_labeled: 40
              label_columns: [S]
            train:
              loss: uu
            """
        )
        config = load_config(
            RefineConfig,
            path,
            ["--data.num_labeled=60", "--data.label_columns", "[S, H, V]", "--train.gamma", "-0.01",
             "--priors.pi", "null", "--overwrite_output_dir"],
        )
        assert config.data.num_labeled == 60
        assert config.data.label_columns == ["S", "H", "V"]
        assert config.train.loss == "uu"  # from the file: the override only touched its own key
        assert config.train.gamma == -0.01
        assert config.priors.pi is None
        assert config.overwrite_output_dir is True

    def test_a_scalar_for_a_list_becomes_a_one_item_list(self, data_dir):
        config = load_config(RefineConfig, None, ["--data.label_columns", "class"])
        assert config.data.label_columns == ["class"]

    def test_merge_is_recursive(self):
        base = {"data": {"path": "a", "seed": 1}, "name": "x"}
        assert merge(base, {"data": {"seed": 2}}) == {"data": {"path": "a", "seed": 2}, "name": "x"}
        assert base["data"]["seed"] == 1  # the base is not modified


class TestUnknownKeys:
    def test_all_unknown_keys_are_reported_together_with_suggestions(self):
        with pytest.raises(ConfigError) as info:
            config_from_dict(
                RefineConfig,
                {"nmae": "x", "trian": {}, "data": {"text_colum": "t", "zzz": 1}, "priors": {"methd": "direct"}},
            )
        message = str(info.value)
        assert "unknown key nmae (did you mean name?)" in message
        assert "unknown key trian (did you mean train?)" in message
        assert "unknown key data.text_colum (did you mean data.text_column?)" in message
        assert "unknown key priors.methd (did you mean priors.method?)" in message
        # No close match: the valid keys of that section are listed instead.
        assert "unknown key data.zzz (valid: path, hub_split, format, text_column," in message
        assert message.count("unknown key") == 5

    def test_unknown_override_is_caught_like_a_file_key(self, data_dir):
        with pytest.raises(ConfigError, match=r"unknown key loop\.iteration \(did you mean loop\.iterations\?\)"):
            load_config(RefineConfig, None, ["--loop.iteration", "3"])


class TestTypeErrors:
    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"loop": {"iterations": "three"}}, r"loop\.iterations must be an integer, got 'three'"),
            ({"loop": {"iterations": 2.5}}, r"loop\.iterations must be an integer, got 2\.5"),
            ({"loop": {"iterations": True}}, r"loop\.iterations must be an integer, got True"),
            ({"train": {"gamma": "steep"}}, r"train\.gamma must be a number, got 'steep'"),
            ({"train": {"gamma": "nan"}}, r"train\.gamma must be a number, got 'nan'"),
            ({"train": {"gamma": False}}, r"train\.gamma must be a number, got False"),
            ({"overwrite_output_dir": "yes please"}, r"overwrite_output_dir must be true or false, got 'yes please'"),
            ({"train": {"loss": "hinge"}}, r"train\.loss='hinge' is not one of 'robust_uu', 'uu', 'pn'"),
            ({"data": "corpus.csv"}, r"data must be a mapping of DataConfig fields, got str"),
            ({"data": {"label_columns": {"S": 1}}}, r"data\.label_columns must be a list, got dict"),
            ({"data": {"label_columns": ["S", ["H"]]}}, r"data\.label_columns\[1\] must be a string, got list"),
            ({"name": None}, r"name may not be null"),
            ({"name": ["a"]}, r"name must be a string, got list"),
        ],
    )
    def test_wrong_types_name_the_key(self, data, message):
        with pytest.raises(ConfigError, match=message):
            config_from_dict(RefineConfig, data)

    def test_integers_are_accepted_for_floats(self):
        config = config_from_dict(RefineConfig, {"train": {"gamma": 0, "learning_rate": "3e-4"}})
        assert config.train.gamma == 0.0 and isinstance(config.train.gamma, float)
        assert config.train.learning_rate == pytest.approx(3e-4)

    def test_a_non_mapping_config(self):
        with pytest.raises(ConfigError, match="a config must be a mapping of keys to values, got list"):
            config_from_dict(RefineConfig, ["name"])  # type: ignore[arg-type]


class TestInvalidValues:
    """Range checks live in each section's __post_init__; the loader reports them as a ConfigError naming the
    section."""

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"data": {"test_fraction": 1.5}}, r"^data: test_fraction=1\.5 must lie in \[0, 1\)"),
            ({"data": {"num_labeled": 1}}, r"^data: num_labeled=1 must be at least 2"),
            ({"priors": {"pi": 0.3, "theta1": 0.2, "theta2": 0.6}}, r"^priors: theta1=0\.2 must be greater than "
                                                                     r"theta2=0\.6"),
            ({"priors": {"pi": 0.3, "theta1": 0.5, "theta2": 0.5}}, r"^priors: theta1=0\.5 must be greater"),
            ({"priors": {"theta1": 0.8}}, r"^priors: set all three of pi, theta1, theta2, or none"),
            ({"priors": {"pi": 1.2, "theta1": 0.8, "theta2": 0.1}}, r"^priors: pi=1\.2 must lie in \[0, 1\]"),
            ({"train": {"validation_fraction": 0.6}}, r"^train: validation_fraction=0\.6 must lie in \(0, 0\.5\)"),
            ({"loop": {"iterations": 0}}, r"^loop: iterations=0 must be at least 1"),
        ],
    )
    def test_post_init_errors_name_the_section(self, data, message):
        with pytest.raises(ConfigError, match=message):
            config_from_dict(RefineConfig, data)

    def test_valid_fixed_priors(self):
        config = config_from_dict(RefineConfig, {"priors": {"pi": 0.31, "theta1": 0.8, "theta2": 0.1}})
        assert (config.priors.pi, config.priors.theta1, config.priors.theta2) == (0.31, 0.8, 0.1)

    def test_invalid_override_from_the_command_line(self, data_dir):
        with pytest.raises(ConfigError, match=r"^data: test_fraction=1\.5"):
            load_config(RefineConfig, None, ["--data.test_fraction", "1.5"])


@dataclass
class _Inner:
    depth: int = field(default=3, metadata={"help": "How deep."})
    tags: list[str] = field(default_factory=lambda: ["a"], metadata={"help": "Tags."})


@dataclass
class _Outer:
    name: str = field(default="x", metadata={"help": "A name."})
    inner: _Inner = field(default_factory=_Inner)


class TestDescribeFields:
    def test_nested_keys_with_defaults_and_help(self):
        assert describe_fields(_Outer) == [
            ("--name", "x", "A name."),
            ("--inner.depth", 3, "How deep."),
            ("--inner.tags", ["a"], "Tags."),
        ]

    def test_every_refine_field_is_listed(self):
        rows = {key: (default, help_) for key, default, help_ in describe_fields(RefineConfig)}
        assert rows["--data.path"][0] == ""
        assert rows["--train.gamma"][0] == -0.001
        assert "--priors.theta1" in rows and "--loop.iterations" in rows
        # One row per leaf: the section names themselves are not options.
        assert "--data" not in rows and "--train" not in rows
        default = RefineConfig()
        sections = [f.name for f in dataclasses.fields(default) if dataclasses.is_dataclass(getattr(default, f.name))]
        leaves = len(dataclasses.fields(default)) - len(sections)
        leaves += sum(len(dataclasses.fields(getattr(default, name))) for name in sections)
        assert len(rows) == leaves
        assert all(help_ for help_ in (h for _, h in rows.values())), "every field documents itself in help"
