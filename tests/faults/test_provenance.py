"""Provenance: changing a file a result depends on reruns exactly the jobs it feeds; a job
that fails leaves the previous result in place.

One small real run (an image folder and a few images, a net from a weights file and one
trained in the pipeline, up to the activations), then each change on a copy and a dry run
whose planned jobs are compared, output by output (nothing else is planned).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.test_workflow import snakemake

from .helpers import ROOT, make_model, snapshot

TARGETS = ["results/models/net.json", "results/activations/trained/shapes.json",
           "results/activations/trained/pics.json"]
DAY = 86400
# the folder's store; the net trained on it; both its extractions (the net changed)
FED_BY_SHAPES = {"results/data/shapes.zarr", "results/models/trained.pt",
                 "results/activations/trained/shapes.json", "results/activations/trained/pics.json"}


def png(path, seed):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(path)


def older(path):
    """Set the file's modification time a day back: only a recorded stamp can notice it."""
    t = path.stat().st_mtime - DAY
    os.utime(path, (t, t))


CONFIG = {
    "seed": 0,
    "datasets": {  # paths relative to the working directory
        "digits": {"kind": "digits", "classes": [0, 1, 2], "size": 16},
        "shapes": {"kind": "folder", "path": "inputs/shapes", "size": 16},
        "pics": {"kind": "images", "paths": ["inputs/a.png", "inputs/b.png"], "size": 16},
    },
    "models": {
        "net": {"arch": "digitnet", "weights": "inputs/net.pt", "num_classes": 5,
                "analyse_on": ["digits"], "layers": ["relu1"]},
        "trained": {"arch": "digitnet", "weights": "train", "train_on": "shapes",
                    "analyse_on": ["shapes", "pics"], "layers": ["relu1"], "train": {"epochs": 1}},
    },
    "modes": ["position"],
    "extract": {"device": "cpu", "batch_size": 16, "chunk_size": 16},
    "preprocess": {"pca": 4},
}


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A working directory where the TARGETS are built and up to date."""
    work = tmp_path_factory.mktemp("provenance") / "work"
    for cls, seed in (("red", 0), ("blue", 100)):
        for i in range(6):
            png(work / f"inputs/shapes/{cls}/{i}.png", seed + i)
    png(work / "inputs/a.png", 7)
    png(work / "inputs/b.png", 8)
    make_model(work / "inputs")
    (work / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    out = run(work, "--cores", "2", "results/data/digits.zarr", *TARGETS)
    assert out.returncode == 0, out.stderr[-3000:]
    return work


def run(work, *args):
    return snakemake(ROOT, work, "--configfile", str(work / "config.yaml"), *args)


def planned(work):
    """What a dry run would do: the first output of each job it lists."""
    out = run(work, "-n", *TARGETS)
    assert out.returncode == 0, out.stderr[-3000:]
    return set(re.findall(r"^\s+output: ([^,\s]+)", out.stdout, re.M))


@pytest.fixture
def work(done, tmp_path):
    dest = tmp_path / "work"
    shutil.copytree(done, dest, symlinks=True)  # keeps modification times
    return dest


def test_replaced_weights_file_and_paths_file_rerun_what_they_feed(work):
    make_model(work / "inputs", seed=1)  # other weights and another image, both given an
    png(work / "inputs/b.png", 9)  # older time than the results: only their stamps tell
    older(work / "inputs/net.pt")
    older(work / "inputs/b.png")
    assert planned(work) == {"results/models/net.pt", "results/data/pics.zarr",
                             "results/activations/trained/pics.json"}


def test_weights_replaced_by_a_file_of_the_same_size_and_time_retrain(work):
    """Another seed's state_dict has the same size; with the old modification time put back
    (``touch -r``) only the file's content tells."""
    path = work / "inputs/net.pt"
    before = path.stat()
    make_model(work / "inputs", seed=1)
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert planned(work) == {"results/models/net.pt"}


def test_image_added_to_a_folder_reruns_what_it_feeds(work):
    png(work / "inputs/shapes/red/6.png", 50)
    older(work / "inputs/shapes/red/6.png")
    assert planned(work) == FED_BY_SHAPES


def test_part_masks_set_or_changed_rerun_nothing_the_images_feed(work):
    """A data set's mask keys are read by prepare_masks alone: setting or changing them
    re-scores the label maps (rules/atlas.smk) and stored, trained and extracted nothing
    again (every job reading the data set reran: 7 minutes of the parts config)."""
    (work / "inputs/masks").mkdir()
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["datasets"]["shapes"] |= {"masks": "inputs/masks", "mask_background": "#ffffff",
                                     "mask_ignore": [255]}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    assert planned(work) == set()


def test_image_replaced_by_one_of_the_same_size_and_time_reruns_and_a_touch_does_not(work):
    """Images are known by their content: another image of the same size with the old
    modification time put back (``touch -r``, an archive's fixed dates) reruns what it
    feeds; the copy of the project (the fixture's) and a plain ``touch`` rerun nothing."""
    assert planned(work) == set()
    path = work / "inputs/shapes/blue/2.png"
    os.utime(path)  # touched: newer, the same content
    assert planned(work) == set()
    before = path.stat()
    png(path, 77)
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert planned(work) == FED_BY_SHAPES


def test_added_layer_or_data_set_does_not_retrain(work):
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["models"]["trained"]["layers"].append("relu2")
    config["models"]["trained"]["analyse_on"].append("pic_a")
    config["datasets"]["pic_a"] = {"kind": "images", "paths": ["inputs/a.png"], "size": 16}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    assert planned(work) == {"results/activations/trained/shapes.json",
                             "results/activations/trained/pics.json"}


def test_failed_job_is_planned_again(work):
    """An image that breaks the job (not a config error) stops it naming the file; Snakemake
    has deleted the old store, and the next run plans it again with what it feeds, although
    the results made from the old store are still there (their params name its sources).
    Snakemake's ``update()`` flag would keep the old store, but it records the failed job's
    params for it: the old store would pass as made from the new images."""
    (work / "inputs/shapes/blue/2.png").write_bytes(b"not a png")
    out = run(work, "--cores", "1", "results/data/shapes.zarr")
    assert out.returncode != 0
    assert "cannot read image inputs/shapes/blue/2.png" in out.stderr
    assert planned(work) == FED_BY_SHAPES


FIT = "results/dpgmm/net/digits/relu1/position.npz"


def planned_for(work, target):
    out = run(work, "-n", target)
    assert out.returncode == 0, out.stderr[-3000:]
    return set(re.findall(r"^\s+output: ([^,\s]+)", out.stdout, re.M))


def failed(work, output):
    """What Snakemake leaves of ``output`` after the job making it failed: neither the file
    nor its record of the params it was made with (``.snakemake/metadata``), which a job
    that failed loses too."""
    path = work / output
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    for record in (work / ".snakemake/metadata").iterdir():
        try:
            name = base64.urlsafe_b64decode(record.name).decode()
        except ValueError:
            continue
        if name == output:
            record.unlink()


def _configure(work, change):
    config = yaml.safe_load((work / "config.yaml").read_text())
    change(config)
    (work / "config.yaml").write_text(yaml.safe_dump(config))


def test_a_packaged_data_set_changed_and_its_store_lost_is_planned_again(work):
    """A failed prepare_dataset leaves no store and no record of its params: the jobs that
    read it name its config, so a changed digits data set is made again with what reads it
    (they named only the files of folder and image-list data sets: "Nothing to be done", and
    every result kept the old data set's)."""
    extraction, fit = "results/activations/net/digits.json", FIT
    assert run(work, "--cores", "2", fit).returncode == 0
    _configure(work, lambda c: c["datasets"]["digits"].update(classes=[0, 1, 3]))
    failed(work, "results/data/digits.zarr")
    assert {"results/data/digits.zarr", extraction, fit} <= planned_for(work, fit)


def test_extraction_settings_changed_and_the_extraction_lost_rerun_the_fits(work):
    """The fits name the extraction's settings: with the extraction's manifest gone (a job
    that failed after extract.smooth was set) the fit is planned again with the extraction
    (it was "Nothing to be done", the fit of the unsmoothed maps kept)."""
    fit = FIT
    assert run(work, "--cores", "2", fit).returncode == 0
    _configure(work, lambda c: c["extract"].update(smooth={"relu1": 1.0}))
    failed(work, "results/activations/net/digits.json")
    assert {"results/activations/net/digits.json", fit} <= planned_for(work, fit)


def test_a_deleted_activation_store_is_named_with_the_way_to_extract_it_again(work):
    """Its manifest is the extraction's declared output: Snakemake plans nothing, and says
    so before any job runs; a job that reads the store fails naming the same remedy."""
    shutil.rmtree(work / "results/activations/trained/shapes.zarr")
    out = run(work, "-n", *TARGETS)
    assert out.returncode == 0, out.stderr[-3000:]
    said = ("results/activations/trained/shapes.zarr is gone but its manifest "
            "results/activations/trained/shapes.json is not")
    assert said in out.stderr
    assert "snakemake --forcerun results/activations/trained/shapes.json" in out.stderr


def test_config_error_fails_before_any_job_and_keeps_results(work):
    """`classes: [5, 12]` for digits used to fail in the job, after its store was deleted."""
    before = snapshot(work / "results")
    assert "data/digits.zarr/zarr.json" in before
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["datasets"]["digits"]["classes"] = [5, 12]
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    out = run(work, "--cores", "1", "results/data/digits.zarr")
    assert out.returncode != 0
    assert "datasets.digits.classes: unknown class(es) [12]" in out.stderr
    assert snapshot(work / "results") == before


def test_the_kept_digests_are_read_once_per_process(tmp_path, monkeypatch):
    """An ``images`` data set asks for each file's digest in turn: the kept digests of their
    folder are read from their file once, not once per image (3,000 paths: 6 s a
    fingerprint)."""
    from convdp import provenance

    monkeypatch.setattr(provenance, "CACHE_DIR", tmp_path / "digests")
    monkeypatch.setattr(provenance, "_MEMORY", {})
    paths = [tmp_path / "images" / f"{i}.png" for i in range(5)]
    for i, path in enumerate(paths):
        png(path, i)
    first = provenance.dataset_fingerprint({"kind": "images", "paths": list(map(str, paths))})
    monkeypatch.setattr(provenance, "_MEMORY", {})  # a new Snakemake process
    reads = []
    cache_file = provenance._cache_file
    monkeypatch.setattr(provenance, "_cache_file", lambda key: reads.append(key) or cache_file(key))
    again = provenance.dataset_fingerprint({"kind": "images", "paths": list(map(str, paths))})
    assert again == first and len(reads) == 1


def test_an_images_data_set_asks_each_folder_for_its_digests_once(tmp_path, monkeypatch):
    """The fingerprint of an ``images`` data set is each path's own digest in order (a path
    named twice, a missing one, two folders), asked of each folder once: per path, each
    call compared and rebuilt the folder's kept digests (3,000 paths: 0.7 s)."""
    from convdp import provenance

    monkeypatch.setattr(provenance, "CACHE_DIR", tmp_path / "digests")
    monkeypatch.setattr(provenance, "_MEMORY", {})
    paths = [tmp_path / folder / f"{i}.png" for folder in ("a", "b") for i in range(3)]
    for i, path in enumerate(paths):
        png(path, i)
    named = [str(p) for p in paths] + [str(paths[0]), str(tmp_path / "a" / "gone.png")]
    calls = []
    digests = provenance.content_digests
    monkeypatch.setattr(provenance, "content_digests",
                        lambda root, names, **kw: calls.append(root) or digests(root, names, **kw))
    got = provenance.dataset_fingerprint({"kind": "images", "paths": named})
    assert sorted(map(str, calls)) == [str(tmp_path / "a"), str(tmp_path / "b")]
    each = [provenance.content_digest(p) for p in named]
    assert each[-1] == "missing" and len(set(each[:6])) == 6 and each[6] == each[0]
    assert got == provenance._digest(f"{p}\t{d}" for p, d in zip(named, each, strict=True))


def test_a_file_is_read_again_only_where_its_times_moved(tmp_path, monkeypatch):
    """The kept digest of a file serves while its size, modification and status-change
    times stay (a planted wrong digest is returned, so the file was not read); once its
    times move it is read again; digests of other files stay kept (one root serves a
    weights file and images beside it) until a walk of the folder finds them gone."""
    from convdp import provenance

    monkeypatch.setattr(provenance, "CACHE_DIR", tmp_path / "digests")
    monkeypatch.setattr(provenance, "_MEMORY", {})
    folder = tmp_path / "images"
    for i in range(3):
        png(folder / f"{i}.png", i)
    first = provenance.content_digests(folder, ["0.png", "1.png", "2.png"])
    (kept,) = (tmp_path / "digests").glob("*.json")
    digests = json.loads(kept.read_text())
    assert {n: d[3] for n, d in digests.items()} == first
    digests["1.png"][3] = "planted"
    kept.write_text(json.dumps(digests))
    monkeypatch.setattr(provenance, "_MEMORY", {})  # a new Snakemake process
    assert provenance.content_digests(folder, ["0.png", "1.png"])["1.png"] == "planted"
    os.utime(folder / "1.png")
    assert provenance.content_digests(folder, ["1.png"]) == {"1.png": first["1.png"]}
    assert set(json.loads(kept.read_text())) == {"0.png", "1.png", "2.png"}  # others kept
    (folder / "2.png").unlink()  # gone: dropped when the folder is walked
    provenance.content_digests(folder, ["0.png", "1.png"], walked=True)
    assert set(json.loads(kept.read_text())) == {"0.png", "1.png"}
    (folder / "broken.png").symlink_to(folder / "nowhere.png")  # the reader skips it
    assert provenance.folder_fingerprint.__wrapped__(folder).startswith("3 images, sha256:")


# Small fits: the two tests below run fits and the transfer from the fixture's activations.
SMALL_FITS = {"preprocess": {"pca": 4, "max_samples": 500},
              "dpgmm": {"n_components": 4, "max_iter": 20, "restarts": 1,
                        "sample_check": False, "seed_check": False}}


def test_a_split_fit_whose_model_fit_failed_is_planned_again(work):
    """label_jobs > 1: fit_dpgmm_model fits the model that the label jobs and merge_dpgmm
    read. One that fails after a setting changed (here at once, more components than samples;
    on a cluster out of memory or time, or killed) loses its outputs, and its record keeps the
    new params: the merge, their only reader, named no fit setting, so the next run said
    "Nothing to be done" and kept the fit made with the old settings."""
    model = FIT.replace(".npz", ".model.npz")
    _configure(work, lambda c: c.update(label_jobs=2, **SMALL_FITS))
    assert run(work, "--cores", "2", FIT).returncode == 0
    assert planned_for(work, FIT) == set()
    _configure(work, lambda c: c["dpgmm"].update(n_components=501))  # more than the samples
    out = run(work, "--cores", "1", FIT)
    assert out.returncode != 0 and "fewer than the 501 mixture components" in out.stderr
    assert not (work / model).exists() and (work / FIT).exists()  # the old fit stays
    assert {model, FIT} <= planned_for(work, FIT)


def test_a_transfer_verdict_whose_retraining_failed_is_planned_again(work):
    """The verdict is the only reader of its retraining and its scores: a transfer_retrain
    that fails after its settings changed (here at once, a held-out share that leaves no
    image to train on; on a cluster out of time after transfer.epochs grew, or killed) loses
    its output, and its record keeps the new params: the verdict named none of them, so the
    next run said "Nothing to be done" and kept the verdict of the old retraining."""
    verdict, retrain = "results/transfer/net/digits_t.csv", "results/transfer/net/digits_t/retrain.json"

    def target(c):
        c["datasets"]["digits_t"] = {"kind": "digits", "classes": [3, 4], "size": 16,
                                     "max_samples": 40}
        c["models"]["net"]["analyse_on"] = ["digits", "digits_t"]
        c["transfer"] = {"max_samples": 500, "probe_folds": 2, "epochs": 1, "repeats": 1,
                         "n_examples": 1}
        c.update(SMALL_FITS)

    _configure(work, target)
    assert run(work, "--cores", "2", verdict).returncode == 0
    assert planned_for(work, verdict) == set()
    # the model's training settings reach the retraining alone (the net is loaded from a file)
    _configure(work, lambda c: c["models"]["net"].update(train={"val_fraction": 0.99}))
    out = run(work, "--cores", "1", verdict)
    assert out.returncode != 0 and "Error in rule transfer_retrain" in out.stderr
    assert not (work / retrain).exists() and (work / verdict).exists()  # the old verdict stays
    assert {retrain, verdict} <= planned_for(work, verdict)
