"""The tiler on the real rasters in ../shared/data/geotiff and on small generated ones."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod
from rasterio.warp import transform
from rasterio.windows import Window, bounds
from shapely.geometry import box
from shapely.ops import unary_union

from geovlm.errors import InputError, ParameterError
from geovlm.scenes.tiling import Chip, SceneTiler, TilingOptions, chip_offsets, iter_chips


def _tiler(path, **options) -> SceneTiler:
    return SceneTiler(path, TilingOptions(**options))


def _write(path, data: np.ndarray, transform: Affine, crs="EPSG:32618", **profile) -> None:
    count, height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=count,
        dtype=data.dtype, crs=crs, transform=transform, **profile,
    ) as dst:
        dst.write(data)


@pytest.mark.parametrize(
    ("relative", "options", "dtype_in"),
    [
        ("rasterio/RGB.byte.tif", {}, "uint8"),
        ("rasterio/cogeo.tif", {}, "uint8"),
        ("rio-tiler/rgb.tif", {"size": 128}, "uint16"),
        ("rio-tiler/cog.tif", {"nodata": 1}, "uint16"),
        ("opengeos/m_4709963_se_14_1_20200831.tif", {}, "uint8"),
        ("opengeos/dsm.tif", {"size": 128}, "float32"),
        ("rasterio/world.rgb.tif", {"size": 256}, "uint8"),
        ("solaris/sample_geotiff.tif", {}, "uint16"),
        ("rio-tiler/pix4d_alpha_nodata.tif", {"size": 256}, "uint8"),
    ],
)
def test_real_rasters_give_rgb_chips_with_exact_footprints(geotiff_dir, relative, options,
                                                           dtype_in):
    path = geotiff_dir / relative
    with _tiler(path, **options) as tiler, rasterio.open(path) as src:
        assert src.dtypes[0] == dtype_in
        chips = list(tiler.chips())
        assert chips, "every real test raster has valid chips"
        size = tiler.options.size
        for chip in chips:
            assert chip.image.mode == "RGB"
            assert chip.image.size == (size, size)
            assert chip.crs == src.crs
            assert 0.5 <= chip.valid_fraction <= 1.0
            if chip.window.width == size and chip.window.height == size:
                left, bottom, right, top = bounds(chip.window, src.transform)
                assert chip.footprint.bounds == pytest.approx((left, bottom, right, top))
            assert chip.chip_id == Chip.make_id(chip.row, chip.col)
        ids = [c.chip_id for c in chips]
        assert len(ids) == len(set(ids))


def test_edge_chips_are_shifted_inward_not_padded(geotiff_dir):
    with _tiler(geotiff_dir / "rasterio/RGB.byte.tif", size=256, min_valid=0) as tiler:
        chips = list(tiler.chips())
    # 791 x 718 pixels: columns start at 0, 256, 512 and 535 (shifted inward), rows likewise.
    assert sorted({c.window.col_off for c in chips}) == [0, 256, 512, 535]
    assert sorted({c.window.row_off for c in chips}) == [0, 256, 462]
    assert all(c.window.width == 256 and c.window.height == 256 for c in chips)


def test_nodata_collar_lowers_valid_fraction_and_chips_are_skipped(geotiff_dir):
    path = geotiff_dir / "rasterio/RGB.byte.tif"
    with _tiler(path, size=256, min_valid=0) as everything:
        fractions = {c.chip_id: c.valid_fraction for c in everything.chips()}
    with _tiler(path, size=256, min_valid=0.5) as tiler:
        kept = {c.chip_id for c in tiler.chips()}
        assert tiler.skipped_invalid == sum(f < 0.5 for f in fractions.values())
    assert kept == {cid for cid, f in fractions.items() if f >= 0.5}
    # The collar is nodata 0: an invalid pixel is black in all bands.
    with rasterio.open(path) as src:
        data = src.read(window=Window(0, 0, 256, 256))
    corner = next(c for c in _tiler(path, size=256, min_valid=0).chips() if c.chip_id ==
                  "r0000_c0000")
    valid = ~(data == 0).all(axis=0)
    assert corner.valid_fraction == pytest.approx(valid.mean())


def test_undeclared_fill_value_needs_nodata_override(geotiff_dir):
    path = geotiff_dir / "rio-tiler/cog.tif"
    with _tiler(path, min_valid=0) as tiler:
        plain = {c.chip_id: c.valid_fraction for c in tiler.chips()}
    with _tiler(path, min_valid=0, nodata=1) as tiler:
        override = {c.chip_id: c.valid_fraction for c in tiler.chips()}
    assert all(f == 1.0 for f in plain.values())
    assert min(override.values()) < 0.5 < max(override.values())


def test_alpha_band_marks_transparent_corners_invalid(geotiff_dir):
    path = geotiff_dir / "rio-tiler/pix4d_alpha_nodata.tif"
    with _tiler(path, size=256, min_valid=0) as tiler:
        chips = list(tiler.chips())
    with rasterio.open(path) as src:
        alpha = src.read(4)
    assert min(c.valid_fraction for c in chips) < 1.0
    corner = chips[0]
    w = corner.window
    expected = (alpha[w.row_off:w.row_off + 256, w.col_off:w.col_off + 256] > 0).mean()
    assert corner.valid_fraction == pytest.approx(expected)


def test_small_scene_gives_one_padded_chip(geotiff_dir):
    with _tiler(geotiff_dir / "rasterio/byte.tif", size=64, min_valid=0) as tiler:
        chips = list(tiler.chips())
    assert len(chips) == 1
    chip = chips[0]
    assert chip.valid_fraction == pytest.approx(400 / 64**2)
    pixels = np.asarray(chip.image)
    assert (pixels[20:, :] == 0).all() and (pixels[:, 20:] == 0).all()
    # The padded chip extends past the scene with the scene's pixel size.
    with rasterio.open(geotiff_dir / "rasterio/byte.tif") as src:
        assert chip.transform == src.transform
    with _tiler(geotiff_dir / "rasterio/byte.tif", size=64) as tiler:
        assert list(tiler.chips()) == []
        assert tiler.skipped_invalid == 1


def test_single_band_becomes_grey_and_stretch_is_scene_wide(geotiff_dir):
    path = geotiff_dir / "solaris/sample_geotiff.tif"
    with _tiler(path, size=256, min_valid=0) as tiler:
        chips = list(tiler.chips())
        low, high = tiler.reader.stretch.low, tiler.reader.stretch.high
    pixels = np.asarray(chips[0].image)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    with rasterio.open(path) as src:
        data = src.read(1).astype(float)
        raw = src.read(1, window=chips[0].window).astype(float)
    # One stretch for the whole scene: its limits are near the scene's 2nd/98th percentiles.
    assert low[0] == pytest.approx(np.percentile(data, 2), rel=0.05)
    assert high[0] == pytest.approx(np.percentile(data, 98), rel=0.05)
    expected = np.clip((raw - low[0]) * 255 / (high[0] - low[0]), 0, 255).astype(np.uint8)
    assert np.abs(pixels[..., 0].astype(int) - expected).max() <= 1


def test_bands_option_reorders_and_rejects_out_of_range(geotiff_dir):
    path = geotiff_dir / "opengeos/m_4709963_se_14_1_20200831.tif"
    with _tiler(path, size=256) as rgb, _tiler(path, size=256, bands=(3, 2, 1)) as bgr:
        a, b = next(rgb.chips()), next(bgr.chips())
    assert (np.asarray(a.image)[..., ::-1] == np.asarray(b.image)).all()
    with pytest.raises(ParameterError, match="band 5"):
        _tiler(path, bands=(5, 2, 1))
    with pytest.raises(ParameterError, match=r"one .* or three"):
        TilingOptions(bands=(1, 2))


def test_gsd_resamples_chips_to_the_target_ground_distance(geotiff_dir):
    # cogeo.tif: EPSG:3857 at 37.7 deg N, so its 0.597 m units are ~0.472 m on the ground.
    path = geotiff_dir / "rasterio/cogeo.tif"
    with _tiler(path, size=256, gsd=0.95) as tiler:
        chips = list(tiler.chips())
    assert len(chips) == 4
    chip = chips[0]
    assert chip.window.width == 514 and chip.image.size == (256, 256)
    # The chip's top and left edges, measured on the ellipsoid, are 256 x 0.95 m long.
    corners = np.asarray(chip.footprint.exterior.coords)[:4]
    lon, lat = np.asarray(transform(chip.crs, "EPSG:4326", corners[:, 0], corners[:, 1]))
    _, _, edges = Geod(ellps="WGS84").inv(lon[[0, 0]], lat[[0, 0]], lon[[1, 3]], lat[[1, 3]])
    assert edges == pytest.approx([256 * 0.95, 256 * 0.95], rel=1e-3)


def test_gsd_on_geographic_scene_uses_metres_at_the_centre(geotiff_dir):
    path = geotiff_dir / "rasterio/world.rgb.tif"  # 0.703125 deg ~ 78 km at the equator
    with _tiler(path, size=64, gsd=156_000) as tiler:
        res_x, _ = tiler.info.resolution_m
        chip = next(tiler.chips())
    assert res_x == pytest.approx(78_270, rel=0.01)
    assert chip.window.width == pytest.approx(128, abs=1)


def test_rotated_geotransform_footprint_follows_the_window_corners(tmp_path):
    transform = Affine.translation(500_000, 4_000_000) @ Affine.rotation(30) @ Affine.scale(1, -1)
    path = tmp_path / "rotated.tif"
    _write(path, np.full((3, 100, 100), 128, np.uint8), transform)
    with _tiler(path, size=50) as tiler:
        chips = list(tiler.chips())
    chip = next(c for c in chips if c.chip_id == "r0001_c0001")
    expected = [transform @ xy for xy in ((50, 50), (100, 50), (100, 100), (50, 100))]
    assert np.allclose(np.asarray(chip.footprint.exterior.coords)[:4], expected)


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(20, 300),
    height=st.integers(20, 300),
    size=st.integers(16, 128),
    overlap_share=st.floats(0, 0.9),
)
def test_chips_cover_the_whole_scene(tmp_path_factory, width, height, size, overlap_share):
    path = tmp_path_factory.mktemp("cover") / "scene.tif"
    _write(path, np.full((3, height, width), 7, np.uint8), Affine(2, 0, 1000, 0, -2, 5000))
    overlap = min(size - 1, int(size * overlap_share))
    with _tiler(path, size=size, overlap=overlap, min_valid=0) as tiler:
        chips = list(tiler.chips())
    scene = box(1000, 5000 - 2 * height, 1000 + 2 * width, 5000)
    covered = unary_union([c.footprint for c in chips])
    assert covered.contains(scene.buffer(-1e-6))
    for chip in chips:
        assert chip.window.col_off >= 0 and chip.window.row_off >= 0
        assert chip.window.col_off + chip.window.width <= width
        assert chip.window.row_off + chip.window.height <= height


def test_chip_offsets_formula():
    assert chip_offsets(1024, 512, 512) == [0, 512]
    assert chip_offsets(1025, 512, 512) == [0, 512, 513]
    assert chip_offsets(1000, 512, 256) == [0, 256, 488]
    assert chip_offsets(512, 512, 100) == [0]


def test_iter_chips_is_deterministic(geotiff_dir):
    path = geotiff_dir / "rasterio/cogeo.tif"
    first = [(c.chip_id, c.image.tobytes()) for c in iter_chips(path, 256)]
    second = [(c.chip_id, c.image.tobytes()) for c in iter_chips(path, 256)]
    assert first == second


def test_skip_avoids_reading_done_chips(geotiff_dir):
    path = geotiff_dir / "rasterio/cogeo.tif"
    with _tiler(path, size=256) as tiler:
        done = {cell.chip_id for cell in tiler.cells[:5]}
        rest = [c.chip_id for c in tiler.chips(skip=done)]
    assert len(rest) == len(tiler) - 5 and not set(rest) & done


def _open_descriptors(path) -> int:
    """This process's open files that are `path` (Linux's /proc)."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == os.path.realpath(path))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc")
def test_reading_a_scene_row_by_row_gives_its_chips_and_keeps_no_file_open(geotiff_dir):
    path = geotiff_dir / "rasterio/cogeo.tif"
    with _tiler(path, size=256) as tiler:
        whole = [(c.chip_id, c.image.tobytes()) for c in tiler.chips()]
        ids = [cell.chip_id for cell in tiler.cells]
        open_before = _open_descriptors(path)
        rows = []
        for start in range(0, len(ids), 3):  # as an engine's worker reads them, batch by batch
            wanted = set(ids[start:start + 3])
            rows += [(c.chip_id, c.image.tobytes()) for c in tiler.chips(skip=set(ids) - wanted)]
            assert _open_descriptors(path) == open_before
    assert rows == whole


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.tif", "does not exist"),
        (lambda d: (d / "notes.tif").write_text("hello") and d / "notes.tif", "not a raster"),
    ],
)
def test_bad_inputs_raise_input_error(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        _tiler(make(tmp_path))


def test_no_crs_is_refused(tmp_path):
    path = tmp_path / "nocrs.tif"
    _write(path, np.zeros((3, 32, 32), np.uint8), Affine(1, 0, 0, 0, -1, 32), crs=None)
    with pytest.raises(InputError, match="no coordinate reference system"):
        _tiler(path)


def test_no_geotransform_is_refused(tmp_path):
    path = tmp_path / "nogeo.tif"
    _write(path, np.zeros((3, 32, 32), np.uint8), Affine.identity())
    with pytest.raises(InputError, match=r"no geotransform|no coordinate"):
        _tiler(path)


def test_truncated_tiff_is_refused_with_one_sentence(tmp_path, geotiff_dir):
    data = (geotiff_dir / "rasterio/RGB.byte.tif").read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"truncated or corrupt|not a raster"):  # noqa: SIM117
        with _tiler(path, size=256) as tiler:
            list(tiler.chips())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 5000}, "outside the allowed"),
        ({"size": 8}, "outside the allowed"),
        ({"size": 256, "overlap": 256}, "smaller than the chip size"),
        ({"min_valid": 1.5}, "between 0 and 1"),
        ({"gsd": -1.0}, "positive"),
    ],
)
def test_bad_options_raise_parameter_error(options, message):
    with pytest.raises(ParameterError, match=message):
        TilingOptions(**options)


def test_vrt_input_reads_the_same_pixels_as_its_source(geotiff_dir, tmp_path):
    source = geotiff_dir / "rasterio/cogeo.tif"
    with rasterio.open(source) as src:
        crs_wkt, gt = src.crs.to_wkt(), src.transform.to_gdal()
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{source}</SourceFilename>'
        f"<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b in (1, 2, 3)
    )
    vrt = tmp_path / "scene.vrt"
    vrt.write_text(
        f'<VRTDataset rasterXSize="1024" rasterYSize="1024"><SRS>{crs_wkt}</SRS>'
        f"<GeoTransform>{', '.join(map(str, gt))}</GeoTransform>{bands}</VRTDataset>"
    )
    from_vrt = [(c.chip_id, c.image.tobytes(), c.footprint.wkt) for c in iter_chips(vrt, 512)]
    direct = [(c.chip_id, c.image.tobytes(), c.footprint.wkt) for c in iter_chips(source, 512)]
    assert from_vrt == direct
