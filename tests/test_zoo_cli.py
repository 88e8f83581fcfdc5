"""`python -m causadv_lib.zoo check`: argument checking (no model is built here)."""
from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from causadv_lib import config
from causadv_lib.zoo import __main__ as cli
from causadv_lib.zoo import evaluate


@pytest.fixture
def no_models(monkeypatch):
    """Fail the test if the CLI tries to build or evaluate a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built or evaluated although the arguments are invalid")
    monkeypatch.setattr(cli, "get", refuse)
    monkeypatch.setattr(cli, "top1", refuse)


@pytest.mark.parametrize("option,value,shown", [
    ("--limit", "0", "0"), ("--limit", "-3", "-3"), ("--limit", "ten", "'ten'"), ("--limit", "2.5", "'2.5'"),
    ("--batch-size", "0", "0"), ("--batch-size", "-8", "-8"), ("--batch-size", "x", "'x'")])
def test_non_positive_or_non_integer_counts_are_refused(no_models, capsys, option, value, shown):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check", "-q", option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: invalid value {shown}: expected a positive integer" in err, err


def test_valid_counts_reach_top1(monkeypatch, capsys):
    calls = []
    fake = SimpleNamespace(name="fake", dataset="cifar10")
    monkeypatch.setattr(cli, "get", lambda name: fake)

    def fake_top1(zm, pool, *, limit, batch_size, progress):
        calls.append((zm, pool, limit, batch_size, progress))
        return evaluate.Top1(zm.name, pool, 0.5, limit, np.zeros(limit), np.zeros(limit), np.arange(limit), 0.0)
    monkeypatch.setattr(cli, "top1", fake_top1)
    assert cli.main(["check", "-q", "--models", "fake", "--limit", "1", "--batch-size", "7"]) == 0
    assert calls == [(fake, p, 1, 7, False) for p in evaluate.CHECK_POOLS["cifar10"]]
    assert capsys.readouterr().out.splitlines() == [f"fake {p} top1=0.5000 n=1" for p in evaluate.CHECK_POOLS["cifar10"]]


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"limit": 0}, ValueError, r"limit=0 is invalid: expected a positive integer"),
    ({"limit": -1}, ValueError, r"limit=-1"),
    ({"batch_size": 0}, ValueError, r"batch_size=0 is invalid"),
    ({"batch_size": -4}, ValueError, r"batch_size=-4"),
    ({"limit": 2.5}, TypeError, r"limit must be a positive integer or None, got 2.5"),
    ({"batch_size": True}, TypeError, r"batch_size must be a positive integer or None, got True")])
def test_top1_refuses_bad_counts_before_building_anything(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        evaluate.top1("no-such-model", "no-such-pool", progress=False, **kwargs)


def test_the_module_exits_with_status_2():
    run = subprocess.run([sys.executable, "-m", "causadv_lib.zoo", "check", "--limit", "0"],
                         capture_output=True, text=True, cwd=config.PROJECT_ROOT, env=os.environ.copy())
    assert run.returncode == 2, run.stderr
    assert "argument --limit: invalid value 0: expected a positive integer" in run.stderr
    assert "top1=" not in run.stdout
