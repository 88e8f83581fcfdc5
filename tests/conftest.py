"""Shared pytest set-up: quiet TensorFlow, the `slow` tier, deterministic seeds."""
import os
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Slow tests (full-scale reproduction) run only with RUN_SLOW=1 or an explicit `-m slow`."""
    if os.environ.get("RUN_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="full-scale check: set RUN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def damage_entry():
    """damage(file, how, keep): spoil a cache entry: "truncated", "empty", "garbage", or else a valid npz holding
    only the array `keep` (so that a required one is missing)."""
    def damage(f, how: str, keep: str):
        raw = f.read_bytes()
        if how == "truncated":
            f.write_bytes(raw[:len(raw) // 2])
        elif how == "empty":
            f.write_bytes(b"")
        elif how == "garbage":
            f.write_bytes(b"PK\x03\x04" + b"\0" * 64)
        else:
            with zipfile.ZipFile(f, "w") as z:
                z.writestr(f"{keep}.npy", b"")
    return damage
