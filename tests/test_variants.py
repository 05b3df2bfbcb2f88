"""train.variant: a named variant builds the network with its options, "auto" times every
variant once per host and setting and caches the choice, and each run names the variant it
ran; a name the implementation does not declare is refused in one line."""

from __future__ import annotations

import json
import subprocess

import pytest

from bench.job import variants
from implementations.spec import SpecError
from tests.test_app import ENV, command, runs_of

SMALL = ["dataset.n_train=1500", "train.epochs=2", "train.batch_size=100"]


@pytest.fixture
def cache(tmp_path):
    """A cache of its own: the choice is measured here, not read from the user's."""
    return tmp_path / "cache" / "variants.json"


def mnist_bench(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """The command, with the test's own cache (the data comes from MNIST_BENCH_DATA_DIR)."""
    env = {**ENV, "MNIST_BENCH_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(command(tmp_path, *args), cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=env)  # fmt: skip


def test_auto_measures_once_caches_and_names_the_variant(tmp_path, cache):
    proc = mnist_bench(tmp_path, "-m", "implementation=keras,numpy", "seed=0,1",
                       "train.variant=auto", *SMALL)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    [(key, entry)] = json.loads(cache.read_text()).items()  # keras measured once; numpy has none
    assert "|keras|" in key and "|batch=100" in key and "threads=2" in key
    assert set(entry["medians"]) == {"default", "per_step"} and entry["images"] == 1500
    faster = min(entry["medians"], key=entry["medians"].get)
    margin = entry["medians"][faster] < (1 - variants.AUTO_MARGIN) * entry["medians"]["default"]
    assert entry["chosen"] == (faster if margin else "default")
    children = [r for r in runs_of(tmp_path) if "sweep_parent" not in r.data.tags]
    keras = [r.data.tags for r in children if r.data.tags["implementation"] == "keras"]
    numpy = [r.data.tags for r in children if r.data.tags["implementation"] == "numpy"]
    assert len(keras) == 2 and {t["variant"] for t in keras} == {entry["chosen"]}
    assert {t["variant_choice"] for t in keras} == {
        keras[0]["variant_choice"]
    }  # read, not re-measured
    assert keras[0]["variant_choice"].startswith(f"auto: {entry['chosen']} (median epoch of 1500")
    assert {(t["variant"], t["variant_choice"]) for t in numpy} == {
        ("default", "auto: the implementation has no variants")
    }


def test_a_named_variant_builds_with_its_options(tmp_path, cache):
    proc = mnist_bench(tmp_path, "implementation=tf_tape", "train.variant=graph", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = runs_of(tmp_path)
    assert run.data.tags["variant"] == "graph"
    assert run.data.tags["variant_choice"] == "train.variant=graph"
    assert not cache.exists()  # nothing measured


def test_a_variant_the_implementation_lacks_is_one_line(tmp_path, cache):
    proc = mnist_bench(tmp_path, "implementation=tf_tape", "train.variant=per_step", *SMALL)
    assert proc.returncode == 1
    assert ("train.variant='per_step' is not a variant of tf_tape; allowed: default, auto, "
            "graph, eager") in proc.stderr  # fmt: skip
    [run] = runs_of(tmp_path)
    assert run.info.status == "FAILED"


def test_check_variant_names_the_allowed_ones():
    with pytest.raises(SpecError, match="allowed: default, auto, per_step"):
        variants.check_variant("fast", "keras", {"per_step": {}})
    variants.check_variant("auto", "numpy", {})
