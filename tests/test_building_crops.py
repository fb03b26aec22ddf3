"""Building crops: the square around each footprint, its margin in metres, pre through its grid."""

from __future__ import annotations

import pickle
from functools import partial

import numpy as np
import pytest
from shapely.geometry import box

from geovlm.errors import InputError, ParameterError
from geovlm.scenes.scene import open_scene
from geovlm.sources.building_crops import BuildingCrops, CropOptions, Footprints
from tests.damage_fixtures import POST, footprint_grid, warp_scene


@pytest.fixture(scope="module")
def scenes(geotiff_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("crops")
    post = geotiff_dir / POST
    return post, warp_scene(post, folder / "pre.tif"), footprint_grid(post, folder / "fp.gpkg", 6)


def _footprints(post, vector):
    return Footprints.from_vector(vector, open_scene(post))


def test_crop_is_centred_square_with_margin_in_metres(scenes):
    post, _, vector = scenes
    footprints = _footprints(post, vector)
    assert footprints.counts == {"read": 36, "buildings": 36, "repaired": 0, "not_polygonal": 0,
                                 "outside": 0}
    with BuildingCrops(post, footprints, CropOptions(margin_m=5, min_valid=0)) as crops:
        info = crops.info
        units_per_m = abs(info.transform.a) / info.resolution_m[0]  # Web Mercator's 1/cos(lat)
        assert units_per_m == pytest.approx(1.27, abs=0.01)
        items = list(crops.items())
        assert [c.item_id for c in items] == crops.item_ids() and len(items) == 36
        for crop in items:
            xmin, ymin, xmax, ymax = crop.bounds
            bx0, by0, bx1, by1 = crop.footprint.bounds
            assert (xmin + xmax) / 2 == pytest.approx((bx0 + bx1) / 2)
            assert (ymin + ymax) / 2 == pytest.approx((by0 + by1) / 2)
            assert xmax - xmin == pytest.approx(ymax - ymin)
            # The longer side (10 m) plus 5 m each side, in the CRS's units.
            assert xmax - xmin == pytest.approx(20 * units_per_m, rel=0.01)
            assert crop.post.size == (224, 224) and crop.pre is None
        # Reading order follows the scene's tiles: rows of 512 pixels, top first.
        rows = [(~info.transform @ c.footprint.centroid.coords[0])[1] // 512 for c in items]
        assert rows == sorted(rows)


def _compare(post_crop, pre_crop):
    a = np.asarray(post_crop).astype(float)
    b = np.asarray(pre_crop).astype(float)
    valid = (a.sum(axis=2) > 0) & (b.sum(axis=2) > 0)
    return np.abs(a - b)[valid].mean(), np.corrcoef(a[valid].ravel(), b[valid].ravel())[0, 1]


@pytest.mark.parametrize("margin", [10.0, 150.0])  # a crop upsampled; one shrunk (GDAL warp)
def test_pre_crop_from_another_grid_shows_the_same_ground(scenes, margin):
    post, pre, vector = scenes
    with BuildingCrops(post, _footprints(post, vector),
                       CropOptions(margin_m=margin, min_valid=0.9, pre=str(pre))) as crops:
        items = list(crops.items())
    assert len(items) >= 6
    for crop in items:
        assert crop.pre is not None and crop.pre.size == crop.post.size
        assert crop.pre_valid_fraction is not None and crop.pre_valid_fraction > 0.8
        error, correlation = _compare(crop.post, crop.pre)
        assert error < 6 and correlation > 0.95, (crop.item_id, error, correlation)
    # A pre crop one crop-width off does not match: the comparison can tell.
    shifted = items[0].post.transform(items[0].post.size, 0, (1, 0, 60, 0, 1, 0))
    assert _compare(shifted, items[0].pre)[1] < 0.9


def test_crops_partly_outside_are_padded_and_left_out_under_min_valid(geotiff_dir):
    post = geotiff_dir / "opengeos/m_4709963_se_14_1_20200831.tif"  # NAIP, 5 m, UTM 14N
    info = open_scene(post)
    left, top = info.transform @ (0, 0)
    edge = Footprints(("edge", "inside"), tuple(
        b.wkb for b in (box(left + 1, top - 31, left + 31, top - 1),
                        box(left + 500, top - 530, left + 530, top - 500))), "two")
    with BuildingCrops(post, edge, CropOptions(margin_m=30, min_valid=0)) as crops:
        fractions = {c.item_id: c.valid_fraction for c in crops.items()}
    assert fractions["inside"] == 1.0 and 0.42 < fractions["edge"] < 0.5  # (61/90)² inside
    with BuildingCrops(post, edge, CropOptions(margin_m=30, min_valid=0.5)) as crops:
        assert [c.item_id for c in crops.items()] == ["inside"] and crops.skipped_invalid == 1


def test_opener_pickles_and_refusals(scenes, geotiff_dir, tmp_path):
    post, pre, vector = scenes
    footprints = _footprints(post, vector)
    opener = pickle.loads(pickle.dumps(partial(BuildingCrops, footprints=footprints,
                                               options=CropOptions(pre=str(pre)))))
    with opener(str(post)) as crops:
        assert len(crops) == 36
    with pytest.raises(ParameterError, match="--margin"):
        CropOptions(margin_m=-1)
    far = footprint_grid(geotiff_dir / "opengeos/dsm.tif", tmp_path / "far.gpkg", 2)
    with pytest.raises(InputError, match="none of the 4 footprints"):
        _footprints(post, far)
    with pytest.raises(InputError, match="does not overlap"):
        BuildingCrops(post, footprints, CropOptions(pre=str(geotiff_dir / "opengeos/dsm.tif")))
    with pytest.raises(InputError, match="geographic CRS"):
        BuildingCrops(geotiff_dir / "rasterio/world.rgb.tif", footprints)
