"""Sharded runs on Dask (issue 18): the shared experiment on a LocalCluster of 2 workers is the in-process run, bit
for bit, and stays so when a worker is killed during the run (Dask reruns its shards); nothing half-written is left
in the cache. On a small trained CNN saved as a .keras file (workers load models by name or file)."""
import os
import signal
import threading
import time

import numpy as np
import pytest
from distributed import Client

from causadv_lib import attacks, config, experiment, shards
from causadv_lib.analysis import tables

EPS = (24 / 255,)


def _arrays(exp) -> dict:
    """Every array of an experiment that a table or figure reads, by name."""
    out = {"clean.pixels": exp.clean.pixels, "clean.labels": exp.clean.labels}
    out |= {f"clean.{f}": getattr(exp.clean.ci_result, f) for f in ("ci", "predicted", "probability", "target")}
    out |= {f"prototypes.{f}": getattr(exp.prototypes, f) for f in ("index", "probability", "ci")}
    for key, adv in exp.adversarial.items():
        out[f"{key.full_label}.source"] = adv.source
        for f in ("adversarial", "success", "predicted", "targets", "labels"):
            out[f"{key.full_label}.{f}"] = getattr(adv.attack_result, f)
        for f in ("ci", "predicted", "probability", "target"):
            out[f"{key.full_label}.ci.{f}"] = getattr(adv.ci_result, f)
    return out


def _assert_same(got, want):
    a, b = _arrays(got), _arrays(want)
    assert a.keys() == b.keys()
    different = [k for k in a if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or a[k].tobytes() != b[k].tobytes()]
    assert not different, f"differ from the in-process run: {different}"
    assert got.clean.ci_result.path == want.clean.ci_result.path
    assert tables.success_rows(got) == tables.success_rows(want)


@pytest.fixture(scope="module")
def world(tmp_path_factory, trained_cifar_cnn):
    """The in-process run of a small trained CNN's CIFAR-10 smoke setup (one budget, its own cache), then the same
    environment for the sharded runs; the LocalCluster is closed at the end."""
    root = tmp_path_factory.mktemp("shards")
    file = root / "shard_cnn.keras"
    trained_cifar_cnn.save(file)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(config.CACHE_ENV, str(root / "cache"))
        mp.delenv(config.SCHEDULER_ENV, raising=False)
        mp.setitem(config.ATTACK_EPS, "cifar10", EPS)
        setup = experiment.setup_for("cifar10", "smoke", str(file), normalize="[0,1]")
        experiment.clear_memo()
        reference = experiment.run(setup, progress=False)
        assert reference.clean.n == 10 and len(reference.adversarial) == 6
        assert 5 <= reference.clean.n_correct <= 10
        experiment.clear_memo()
        mp.setenv(config.SCHEDULER_ENV, "local:2")
        try:
            yield setup, reference, root / "cache", mp
        finally:
            experiment.clear_memo()
            shards.close()


def test_two_workers_give_the_in_process_run_bit_for_bit(world):
    setup, reference, cache_dir, mp = world
    mp.setattr(config, "SHARD_IMAGES", 4)              # 3 clean shards, 2-3 shards per attack
    before = len(list((cache_dir / "attacks").glob("*.npz")))
    exp = experiment.run(setup, progress=False)
    client = shards.client()
    assert isinstance(client, Client) and len(client.scheduler_info()["workers"]) == 2
    assert {r["stage"] for r in experiment.TIMINGS} >= {"ci + prototypes (sharded)", "attack + ci (sharded)"}
    n_shards = len(shards.spans(reference.clean.n_correct, 4))
    assert len(list((cache_dir / "attacks").glob("*.npz"))) == before + 6 * n_shards   # one entry per shard
    _assert_same(exp, reference)
    experiment.clear_memo()


def test_a_worker_killed_mid_run_changes_nothing(world):
    setup, reference, cache_dir, mp = world
    mp.setattr(config, "SHARD_IMAGES", 3)              # other shards than the last test's: nothing cached yet
    client = shards.client()
    pids = sorted(client.run(os.getpid).values())
    assert len(pids) == 2
    before = len(list((cache_dir / "attacks").glob("*.npz")))
    stored_at_kill = []

    def kill_when_the_first_shard_is_stored():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            stored = len(list((cache_dir / "attacks").glob("*.npz"))) - before
            if stored >= 1:
                os.kill(pids[0], signal.SIGKILL)
                stored_at_kill.append(stored)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_the_first_shard_is_stored)
    killer.start()
    exp = experiment.run(setup, progress=False)
    killer.join()
    n_shards = 6 * len(shards.spans(reference.clean.n_correct, 3))
    assert stored_at_kill and stored_at_kill[0] < n_shards, "the worker was killed after the run"
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
    assert pids[0] not in client.run(os.getpid).values()
    _assert_same(exp, reference)
    assert len(list((cache_dir / "attacks").glob("*.npz"))) == before + n_shards
    assert not [p for p in cache_dir.rglob("*") if p.name.endswith(".tmp")], "half-written files left in the cache"


def test_shards_of_an_attack_are_its_whole_run():
    """`attacks.generate` with ``part``: shards cut anywhere give the whole run's pixels, targets and predictions."""
    import keras

    from causadv_lib import zoo
    keras.utils.set_random_seed(1)
    i = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(i)
    h = keras.layers.Dense(5, name="logits")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(i, keras.layers.Softmax()(h))
    norm = lambda x: np.asarray(x, np.float32) / np.float32(255.0)  # noqa: E731
    zm = zoo.custom(model, norm, normalize=norm, name="part_cnn")
    x = np.random.default_rng(0).integers(0, 256, (37, 8, 8, 3)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 5, 37)
    for attack in attacks.ATTACKS:
        whole = attacks.generate(zm, x, labels=y, attack=attack, targeted=True, cache=False)
        cuts = [0, 5, 32, 33, 37]
        parts = [attacks.generate(zm, x[a:b], labels=y[a:b], attack=attack, targeted=True, cache=False,
                                  part=(a, 37), batch_size=3) for a, b in zip(cuts, cuts[1:])]
        for f in ("adversarial", "predicted", "targets"):
            joined = np.concatenate([getattr(p, f) for p in parts])
            assert joined.tobytes() == getattr(whole, f).tobytes(), (attack, f)
    with pytest.raises(ValueError, match="part's total"):
        attacks.generate(zm, x[:5], labels=y[:5], part=(34, 37), cache=False)


def test_the_setting_and_what_a_sharded_run_refuses(monkeypatch):
    for value, want in [("", None), ("local:3", "local:3"), ("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786")]:
        monkeypatch.setenv(config.SCHEDULER_ENV, value)
        assert config.scheduler() == want and shards.sharded() == (want is not None)
    for bad in ("local:0", "local", "10.0.0.5:8786", "tcp://host"):
        monkeypatch.setenv(config.SCHEDULER_ENV, bad)
        with pytest.raises(ValueError, match="local:N"):
            config.scheduler()
    monkeypatch.delenv(config.SCHEDULER_ENV)
    assert shards.client() is None and shards.spans(5, 2) == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(RuntimeError, match="no scheduler"):
        shards.compute([(len, "x")], "nothing")
    registered = experiment.Setup("cifar10", "only_here", "smoke", "cifar10_eval", "cifar10_prototypes", EPS, "only_here")
    with pytest.raises(ValueError, match="cannot be loaded by Dask workers"):
        experiment._check_shardable(registered)


def test_cluster_workers_get_the_local_clusters_dask_settings():
    """etc/dask.yaml (README: for `dask worker` on a cluster) sets what `shards` sets for a LocalCluster."""
    import yaml

    got = yaml.safe_load((config.PROJECT_ROOT / "etc" / "dask.yaml").read_text())
    flat = {"distributed.nanny.pre-spawn-environ." + k: v
            for k, v in got["distributed"]["nanny"]["pre-spawn-environ"].items()}
    assert flat == shards._SPAWN_ENV
