"""run_tool: user errors in one line with exit code 2, bugs keep their traceback."""
import pytest

from uda_reid.config import ConfigError
from uda_reid.data.datasets import DATASETS
from uda_reid.data.datasets.base import DatasetLayoutError
from uda_reid.engine.run_tool import run_tool
from uda_reid.utils.safe_load import WeightFileError


def raising(err):
    def action():
        raise err
    return action


@pytest.mark.parametrize("err, message", [
    (ConfigError("Unknown config key 'SOLVER.LRR'"), "Unknown config key 'SOLVER.LRR'"),
    (DatasetLayoutError("no folder bounding_box_train in /data/market"),
     "no folder bounding_box_train in /data/market"),
    (FileNotFoundError("no such file: w.pth"), "no such file: w.pth"),
    (WeightFileError("w.pth: not a weight file"), "w.pth: not a weight file"),
    (ValueError("SOLVER.BASE_LR must be positive, got -1"),
     "SOLVER.BASE_LR must be positive, got -1"),
])
def test_user_errors_are_one_line_with_exit_code_2(capsys, err, message):
    assert run_tool(raising(err)) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_unknown_registry_name_is_a_user_error_without_quotes(capsys):
    assert run_tool(lambda: DATASETS.get("marketz")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No dataset named 'marketz'.") and err.count("\n") == 1


@pytest.mark.parametrize("bug", [KeyError("degenerate"), AttributeError("no attribute 'x'"),
                                 TypeError("f() takes 1 argument"), IndexError("out of range")])
def test_bugs_keep_their_traceback(capsys, bug):
    with pytest.raises(type(bug)) as raised:
        run_tool(raising(bug))
    assert raised.value is bug
    assert "error:" not in capsys.readouterr().err


def test_dict_lookup_bug_inside_a_method_propagates():
    def action():
        return {"stable": 1}["degenerate"]
    with pytest.raises(KeyError, match="degenerate"):
        run_tool(action)
