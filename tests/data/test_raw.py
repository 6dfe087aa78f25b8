from pathlib import Path

import numpy as np
import pytest
import rawpy

from ucdir.data.raw import (
    CHANNELS,
    amplify,
    bayer_offsets,
    open_raw,
    pack_bayer,
    read_packed,
    render,
    render_params,
)

# (file, R position in the 2x2 tile) as documented in ../shared/data/README.md
REAL = {"Blackmagic_PocketCinemaCamera4K.dng": (0, 0), "RAW_KODAK_DC50.KDC": (0, 1)}
LEVELS = {"R": 100.0, "Gr": 200.0, "B": 300.0, "Gb": 400.0}


def mosaic_of(layout: str, black: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A 6x8 mosaic of a 2x2 layout (e.g. "GRBG") with a distinct level per channel, and its
    rawpy-style pattern over colour_desc "RGBG" (second green = index 3)."""
    pattern = np.zeros((2, 2), dtype=np.uint8)
    tile = np.zeros((2, 2))
    red_row = layout.index("R") // 2
    seen_green = False
    for k, letter in enumerate(layout):
        r, c = divmod(k, 2)
        if letter == "G":
            name = "Gr" if r == red_row else "Gb"
            pattern[r, c] = 1 if not seen_green else 3
            seen_green = True
        else:
            name = letter
            pattern[r, c] = "RGB".index(letter)
        tile[r, c] = LEVELS[name] + black
    return np.tile(tile, (3, 4)).astype(np.uint16), pattern


@pytest.mark.parametrize("layout", ["RGGB", "GRBG", "GBRG", "BGGR"])
def test_every_bayer_layout_packs_to_r_gr_b_gb(layout: str) -> None:
    mosaic, pattern = mosaic_of(layout, black=64)
    packed = pack_bayer(mosaic, pattern, "RGBG", [64] * 4, 1064)
    assert packed.shape == (3, 4, 4) and packed.dtype == np.float32
    expected = [LEVELS[name] / 1000 for name in CHANNELS]
    np.testing.assert_allclose(packed.mean(axis=(0, 1)), expected, rtol=1e-6)


def test_per_channel_black_levels_and_clipping() -> None:
    mosaic, pattern = mosaic_of("RGGB")
    black = [10.0, 20.0, 30.0, 250.0]  # indexed like the pattern (R, G, B, G2)
    packed = pack_bayer(mosaic, pattern, "RGBG", black, 300)
    # R, Gr, B, Gb: (level - its black) / (300 - its black), Gb (150 / 50) clipped to 1
    np.testing.assert_allclose(packed[0, 0], [90 / 290, 180 / 280, 1.0, 1.0], rtol=1e-6)


def test_non_bayer_patterns_are_rejected() -> None:
    with pytest.raises(ValueError, match="not a 2x2 Bayer sensor"):
        bayer_offsets(np.zeros((6, 6), dtype=np.uint8), "RGBG")
    with pytest.raises(ValueError, match="not a 2x2 Bayer sensor"):
        bayer_offsets(np.array([[0, 0], [1, 2]]), "RGBG")


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_pack_with_their_own_pattern_and_levels(shared_data: Path, name: str) -> None:
    path = shared_data / "raw" / name
    packed = read_packed(path)
    with rawpy.imread(str(path)) as raw:
        visible = raw.raw_image_visible.astype(np.float64)
        black, white = raw.black_level_per_channel[0], raw.white_level
    assert packed.shape == (visible.shape[0] // 2, visible.shape[1] // 2, 4)
    assert packed.min() >= 0.0 and packed.max() <= 1.0
    r, c = REAL[name]
    red = np.clip((visible[r::2, c::2] - black) / (white - black), 0, 1)
    np.testing.assert_allclose(packed[..., 0], red, atol=1e-6)


def amplified_by_hand(mosaic: np.ndarray, black: float, white: float, ratio: float) -> np.ndarray:
    """(raw − black)·ratio clipped at white, below-black pixels to black, rounded: in float64."""
    signal = np.clip(mosaic.astype(np.float64) - black, 0, None) * ratio
    return np.rint(black + np.minimum(signal, white - black)).astype(np.uint16)


def file_levels(raw: rawpy.RawPy) -> tuple[float, float]:
    """The file's one black level (both real files have the same in all channels) and white."""
    (black,) = set(raw.black_level_per_channel)
    return float(black), float(raw.white_level)


@pytest.mark.parametrize("ratio", [4.0, 2.5])
def test_amplify_is_the_raw_arithmetic_with_a_black_level(shared_data: Path, ratio: float) -> None:
    """The DNG has black 512: the signal above black is scaled, black stays, white clips."""
    path = shared_data / "raw" / "Blackmagic_PocketCinemaCamera4K.dng"
    with open_raw(path, "data.root") as raw:
        black, white = file_levels(raw)
        before = raw.raw_image_visible.copy()
        amplify(raw, ratio)
        after = raw.raw_image_visible.copy()
    assert black == 512 and white == 65535
    expected = amplified_by_hand(before, black, white, ratio)
    np.testing.assert_array_equal(after, expected)
    # every branch ran on this file: below black, scaled, clipped at white
    assert (before < black).any() and (after[before < black] == black).all()
    assert (after == white).any() and ((before > black) & (after < white)).any()
    # a gain that ignored the black level would differ on every pixel above it
    assert not np.array_equal(after, np.minimum(before.astype(np.float64) * ratio, white))


@pytest.mark.parametrize("name", sorted(REAL))
def test_render_amplifies_the_raw_mosaic_before_demosaicing(shared_data: Path, name: str) -> None:
    """render(path, r) is LibRaw's render of the mosaic amplified by hand; a gain applied to the
    rendered image instead (the same mean brightening) gives another image."""
    path = shared_data / "raw" / name
    ratio = 4.0
    with rawpy.imread(str(path)) as raw:  # one render per opened file: LibRaw keeps state
        plain = raw.postprocess(render_params(half_size=True))
    with rawpy.imread(str(path)) as raw:
        black, white = file_levels(raw)
        mosaic = raw.raw_image_visible
        mosaic[...] = amplified_by_hand(mosaic.copy(), black, white, ratio)
        by_hand = raw.postprocess(render_params(half_size=True))
    np.testing.assert_array_equal(render(path, 1.0), plain)
    assert plain.dtype == np.uint16 and plain.shape[:2] == (
        raw_size(path)[0] // 2,
        raw_size(path)[1] // 2,
    )
    rendered = render(path, ratio)
    np.testing.assert_array_equal(rendered, by_hand)
    after_render = np.minimum(plain.astype(np.float64) * ratio, 65535)
    assert np.abs(rendered - after_render).mean() > 100  # on the 16-bit scale


def raw_size(path: Path) -> tuple[int, int]:
    with rawpy.imread(str(path)) as raw:
        return raw.raw_image_visible.shape


def test_amplification_clips_at_white_and_keeps_order(shared_data: Path) -> None:
    path = shared_data / "raw" / "RAW_KODAK_DC50.KDC"
    assert render(path, 1.0).shape == (256, 384, 3)
    with open_raw(path, "data.root") as raw:
        before = raw.raw_image_visible.copy()
        amplify(raw, 1000.0)
        after = raw.raw_image_visible
        assert after.max() == raw.white_level  # clipped at white
        assert np.all(after >= np.minimum(before, raw.white_level))


def test_unreadable_raw_files_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "bad.ARW").write_bytes(b"\0" * 1000)
    with pytest.raises(ValueError, match=r"data\.root: cannot read raw file .*bad.ARW"):
        render(tmp_path / "bad.ARW")
    with pytest.raises(FileNotFoundError, match=r"data\.root: file .*none.ARW does not exist"):
        read_packed(tmp_path / "none.ARW")
