"""The ``unifab`` command: argument errors are one clear line, Verilog generation works."""

import pytest

from unifab.cli import main


def test_verilog_writes_a_top(tmp_path, capsys) -> None:
    assert main(["verilog", "--top", "link_small", "-o", str(tmp_path)]) == 0
    text = (tmp_path / "link_small.v").read_text()
    assert "module link_small" in text
    assert "phy_tx__data" in text


def test_unknown_top_is_one_clear_line(tmp_path, capsys) -> None:
    assert main(["verilog", "--top", "nope", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown top 'nope'" in err[0] and "link_default" in err[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "link", "--flit-error-rate", "2"], "must be a probability in [0, 1]"),
        (["bench", "link", "--latency", "0"], "must be at least 1"),
        (["bench", "switch", "--loads", "0.5,1.5"], "loads must be in (0, 1]"),
        (["bench", "switch", "--pattern", "zigzag"], "invalid choice: 'zigzag'"),
    ],
)
def test_bad_arguments(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_link_latency_above_channel_limit_is_refused(capsys) -> None:
    assert main(["bench", "link", "--latency", "65", "--flits", "10"]) == 2
    assert "latency must be 1..64" in capsys.readouterr().err
