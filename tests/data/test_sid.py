from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException

from tests.commands import run_module
from tests.conftest import CONFIGS
from tests.data.conftest import check_batch, datamodule, one_training_step
from ucdir.data.sid import SIDDataModule, exposure_time, read_pairs
from ucdir.prepare import prepare

KDC = "RAW_KODAK_DC50.KDC"  # GRBG, black 0, white 16383, 512x768
DNG = "Blackmagic_PocketCinemaCamera4K.dng"  # RGGB, black 512, white 65535, 2176x4128


def fake_sid(root: Path, raw_dir: Path, lists: dict[str, list[tuple[str, str, str]]]) -> Path:
    """A SID-shaped tree whose short/long files are links to real raw files.

    `lists` maps a split to (scene, short exposure, raw file name) triples; the long exposure of
    every scene is 10 s.
    """
    for split, entries in lists.items():
        lines = []
        for scene, exposure, source in entries:
            ext = Path(source).suffix
            short = root / "Sony" / "short" / f"{scene}_00_{exposure}s{ext}"
            long = root / "Sony" / "long" / f"{scene}_00_10s{ext}"
            for link in (short, long):
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to(raw_dir / source)
            lines.append(f"./Sony/short/{short.name} ./Sony/long/{long.name} ISO200 F8")
        (root / f"Sony_{split}_list.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def sid_root(tmp_path: Path, shared_data: Path) -> Path:
    return fake_sid(
        tmp_path / "SID",
        shared_data / "raw",
        {
            "train": [("00001", "0.1", KDC), ("00002", "0.04", KDC)],
            "val": [("20001", "0.1", KDC)],
            "test": [("10001", "0.1", KDC)],
        },
    )


def sid(root: Path, *overrides: str) -> SIDDataModule:
    dm = datamodule(
        "sid",
        f"data.root={root}",
        f"data.cache_dir={root.parent / 'cache'}",
        "data.crop=64",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.pin_memory=false",
        *overrides,
    )
    assert isinstance(dm, SIDDataModule)
    return dm


def test_exposures_and_ratios_come_from_the_names(tmp_path: Path) -> None:
    assert exposure_time("./Sony/short/00001_00_0.04s.ARW") == 0.04
    assert exposure_time("00001_00_10s.ARW") == 10.0
    with pytest.raises(ValueError, match="no exposure time"):
        exposure_time("00001_00.ARW")
    listing = tmp_path / "list.txt"
    listing.write_text(
        "./Sony/short/00001_00_0.04s.ARW ./Sony/long/00001_00_10s.ARW ISO200 F8\n"
        "./Sony/short/00002_00_0.033s.ARW ./Sony/long/00002_00_10s.ARW ISO200 F8\n"
        "./Sony/short/00003_00_0.1s.ARW ./Sony/long/00003_00_30s.ARW ISO200 F8\n"
    )
    pairs = read_pairs(listing, tmp_path, "data.train_list", 300.0)
    assert [p.ratio for p in pairs] == pytest.approx([250.0, 300.0, 300.0])
    assert pairs[0].short == tmp_path / "Sony/short/00001_00_0.04s.ARW"
    listing.write_text("./Sony/short/a.ARW ./Sony/long/b.ARW\n")
    with pytest.raises(ValueError, match=r"data\.train_list: .*line 1: no exposure time"):
        read_pairs(listing, tmp_path, "data.train_list", 300.0)


def test_rgb_input_amplified_half_size_renders(sid_root: Path) -> None:
    dm = sid(sid_root, "task.aux_scalars=[exposure_ratio]")
    dm.prepare_data()
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    check_batch(train, (2, 3, 64, 64), (2, 3, 64, 64), 1)
    val = next(iter(dm.val_dataloader()))
    # KDC half size 384x256, trimmed by 4 px per side.
    check_batch(val, (1, 3, 248, 376), (1, 3, 248, 376), 1)
    assert float(val.scalars) == pytest.approx(100 / 300)
    # Same scene file: the input is the target amplified x100 in the raw domain.
    assert float(val.lq.mean()) > 1.5 * float(val.gt.mean())
    assert (
        sid_root.parent / "cache" / "half" / "Sony" / "short" / "00001_00_0.1s.KDC.x100.npy"
    ).is_file()


def test_packed_input_is_half_the_size_of_a_full_target(sid_root: Path) -> None:
    cfg_dm = sid(sid_root, "task.input=packed")
    cfg_dm.prepare_data()
    cfg_dm.setup("fit")
    check_batch(next(iter(cfg_dm.train_dataloader())), (2, 4, 32, 32), (2, 3, 64, 64), 0)
    val = next(iter(cfg_dm.val_dataloader()))
    check_batch(val, (1, 4, 248, 376), (1, 3, 496, 752), 0)
    one_training_step(cfg_dm, lq_channels=4)


def test_both_bayer_patterns_in_one_packed_set(tmp_path: Path, shared_data: Path) -> None:
    root = fake_sid(
        tmp_path / "SID",
        shared_data / "raw",
        {"train": [("00001", "0.1", KDC)], "val": [("20001", "1", DNG), ("20002", "1", KDC)]},
    )
    dm = sid(root, "task.input=packed", "data.test_list=null", "data.batch_size=1")
    dm.prepare_data()
    dm.setup("validate")
    batches = list(dm.val_dataloader())
    assert [tuple(b.lq.shape) for b in batches] == [(1, 4, 1080, 2056), (1, 4, 248, 376)]
    assert [tuple(b.gt.shape) for b in batches] == [(1, 3, 2160, 4112), (1, 3, 496, 752)]


def test_one_training_step(sid_root: Path) -> None:
    one_training_step(sid(sid_root))


def test_prepare_command_decodes_once_in_parallel(sid_root: Path) -> None:
    cache = sid_root.parent / "cache"
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("prepare", [f"data.root={sid_root}", f"data.cache_dir={cache}", "workers=2"])
    assert prepare(cfg) == 8  # 4 amplified inputs + 4 targets
    assert prepare(cfg) == 0  # cached files are skipped
    assert len(list((cache / "half").rglob("*.npy"))) == 8
    assert not list(cache.rglob("*.partial"))


@pytest.mark.slow
def test_prepare_command_line(sid_root: Path) -> None:
    cache = sid_root.parent / "cache"
    out = run_module(
        "ucdir.prepare", "task=sid", f"data.root={sid_root}", f"data.cache_dir={cache}",
        "task.input=packed", "workers=1", timeout=120, check=True,
    )  # fmt: skip
    assert "8/8" in out.stderr  # the progress bar
    assert len(list((cache / "packed").rglob("*.npy"))) == 4
    assert len(list((cache / "full").rglob("*.npy"))) == 4
    assert not list(cache.rglob("*.partial"))


def test_prepare_refuses_tasks_without_a_cache(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("prepare", ["task=jpeg", f"data.root={tmp_path}"])
    with pytest.raises(ValueError, match=r"task=jpeg .* needs no prepare step"):
        prepare(cfg)


def test_clear_errors(sid_root: Path, tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"data\.cache_dir: 4 decoded files .* ucdir\.prepare"
    ):
        sid(sid_root).setup("fit")
    with pytest.raises(FileNotFoundError, match=r"data\.root: folder .*nothing does not exist"):
        sid(tmp_path / "nothing").prepare_data()
    (sid_root / "Sony_val_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"data\.val_list: file .*Sony_val_list.txt"):
        sid(sid_root).prepare_data()
    (sid_root / "Sony_val_list.txt").write_text(
        "./Sony/short/20001_00_0.1s.KDC ./Sony/long/20001_00_10s.KDC ISO200 F8\n"
        "./Sony/short/20009_00_0.1s.KDC ./Sony/long/20009_00_10s.KDC ISO200 F8\n"
    )
    with pytest.raises(FileNotFoundError, match=r"data\.val_list: .*line 2: file .*20009"):
        sid(sid_root).prepare_data()


def test_pairs_that_render_to_different_sizes_are_reported(
    tmp_path: Path, shared_data: Path
) -> None:
    root = fake_sid(tmp_path / "SID", shared_data / "raw", {"train": [("00001", "0.1", KDC)]})
    (root / "Sony" / "long" / "00001_00_10s.KDC").unlink()
    (root / "Sony" / "long" / "00001_00_10s.KDC").symlink_to(shared_data / "raw" / DNG)
    (root / "Sony_val_list.txt").write_text((root / "Sony_train_list.txt").read_text())
    dm = sid(root, "data.test_list=null")
    dm.prepare_data()
    dm.setup("validate")
    with pytest.raises(ValueError, match=r"line 1: pair sizes differ: .*384x256.*2064x1088"):
        next(iter(dm.val_dataloader()))


def test_unknown_scalar_names_are_rejected(sid_root: Path) -> None:
    with pytest.raises(InstantiationException, match=r"data\.aux_scalars: task 'sid' has no"):
        sid(sid_root, "task.aux_scalars=[quality]")
