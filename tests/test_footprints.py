"""Objects over a scene from vector layers and xBD labels: CRSs, repairs, chips, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import Polygon, box

from geovlm.errors import InputError
from geovlm.labels.damage import Damage
from geovlm.scenes.tiling import SceneTiler, TilingOptions
from geovlm.sources.footprints import read_vector_objects, read_xbd_objects

SPACENET = "solaris/sample_geotiff.tif"


@pytest.fixture
def spacenet(geotiff_dir):
    with SceneTiler(geotiff_dir / SPACENET, TilingOptions(256)) as tiler:
        yield tiler


def test_geojson_with_legacy_crs_member_lands_on_its_chips(spacenet, geotiff_dir):
    labels = geotiff_dir.parent / "vector/solaris/geotiff_labels.geojson"
    assert '"crs"' in labels.read_text()[:200]  # the legacy member declares EPSG:32616
    found = read_vector_objects(labels, spacenet)
    assert found.counts() == {"read": 43, "objects": 43, "repaired": 0, "not_polygonal": 0,
                              "outside": 0}
    outlines = {cell.chip_id: cell for cell in spacenet.cells}
    for item in found.objects:
        assert item.chip_id in outlines
        footprint = shapely.box(*spacenet.info.transform @ (0, 0), *spacenet.info.transform @ (
            spacenet.info.width, spacenet.info.height))
        assert footprint.intersects(item.polygon)
    cut = [item for item in found.objects if item.cut]
    assert 0 < len(cut) < len(found.objects)


def test_wgs84_shapefile_over_a_utm_raster_is_reprojected(geotiff_dir):
    shapefile = geotiff_dir.parent / "vector/opengeos/buildings.shp"
    with SceneTiler(geotiff_dir / "opengeos/dsm.tif", TilingOptions(128)) as tiler:
        found = read_vector_objects(shapefile, tiler)
        bounds = tiler.info.transform @ (0, 0), tiler.info.transform @ (283, 259)
    assert len(found.objects) == 84 and found.outside == 0
    (west, north), (east, south) = bounds
    for item in found.objects:  # metres of UTM 18N, not degrees
        x, y = item.polygon.centroid.coords[0]
        assert west <= x <= east and south <= y <= north
    assert len(found.by_chip()) > 1


def _write(path: Path, geometries: list, crs: str = "EPSG:32616", **columns) -> Path:
    gpd.GeoDataFrame(columns, geometry=geometries, crs=crs).to_file(path)
    return path


def test_empty_file_gives_no_objects(spacenet, tmp_path):
    empty = _write(tmp_path / "empty.gpkg", [])
    found = read_vector_objects(empty, spacenet)
    assert found.objects == () and found.read == 0


def test_objects_outside_the_scene_are_counted_and_all_outside_refused(spacenet, tmp_path):
    inside = box(733700, 3725000, 733710, 3725010)
    far = box(0, 0, 10, 10)
    found = read_vector_objects(_write(tmp_path / "some.gpkg", [inside, far]), spacenet)
    assert len(found.objects) == 1 and found.outside == 1
    with pytest.raises(InputError, match=r"none of the 1 features .* lies on"):
        read_vector_objects(_write(tmp_path / "none.gpkg", [far]), spacenet)


def test_invalid_geometry_is_repaired_and_counted_points_left_out(spacenet, tmp_path):
    bowtie = Polygon([(733700, 3725000), (733720, 3725020), (733720, 3725000),
                      (733700, 3725020)])
    assert not bowtie.is_valid
    point = shapely.Point(733800, 3725000)
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps({
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"damage": "destroyed"},
             "geometry": shapely.geometry.mapping(bowtie)},
            {"type": "Feature", "properties": {"damage": "nonsense"},
             "geometry": shapely.geometry.mapping(point)},
        ],
    }))
    # A GeoJSON without a crs member is WGS 84 by the RFC: the UTM numbers lie off Earth.
    with pytest.raises(InputError, match="lies on"):
        read_vector_objects(path, spacenet)
    gpkg = _write(tmp_path / "bad.gpkg", [bowtie, point], damage=["destroyed", "nonsense"])
    found = read_vector_objects(gpkg, spacenet)
    assert found.repaired == 1 and found.not_polygonal == 1
    assert [item.object_id for item in found.objects] == ["1.0", "1.1"]  # two triangles
    assert all(item.polygon.is_valid and item.damage is Damage.DESTROYED
               for item in found.objects)


def test_refusals_name_the_fix(spacenet, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_vector_objects(tmp_path / "missing.gpkg", spacenet)
    (tmp_path / "junk.geojson").write_text("not json")
    with pytest.raises(InputError, match="no vector layer GDAL can read"):
        read_vector_objects(tmp_path / "junk.geojson", spacenet)
    shp = tmp_path / "nocrs.shp"
    gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)]).to_file(shp)
    with pytest.raises(InputError, match="no coordinate reference system; assign one"):
        read_vector_objects(shp, spacenet)
    pins = _write(tmp_path / "pins.gpkg", [shapely.Point(733800, 3725000)])
    with pytest.raises(InputError, match=r"holds no polygons, only points, lines or empty"):
        read_vector_objects(pins, spacenet)


def test_a_dataset_of_several_layers_reads_its_first_polygon_layer(spacenet, tmp_path):
    inside, other = box(733700, 3725000, 733710, 3725010), box(733750, 3725000, 733760, 3725010)
    path = tmp_path / "layers.gpkg"
    for layer, geometries in (("points", [shapely.Point(733700, 3725000)]),
                              ("houses", [inside]), ("more", [inside, other])):
        gpd.GeoDataFrame(geometry=geometries, crs="EPSG:32616").to_file(path, layer=layer)
    assert len(read_vector_objects(path, spacenet).objects) == 1  # "houses", not "points"
    assert len(read_vector_objects(path, spacenet, layer="more").objects) == 2
    with pytest.raises(InputError, match="has no layer 'nope'; choose one of points, houses"):
        read_vector_objects(path, spacenet, layer="nope")


def test_xbd_label_objects_on_the_georeferenced_tile(real_xbd, real_xbd_georef):
    stem = "santa-rosa-wildfire_00000242_post_disaster"
    with SceneTiler(real_xbd_georef / "images" / f"{stem}.tif", TilingOptions(512)) as tiler:
        found = read_xbd_objects(real_xbd / "labels" / f"{stem}.json", tiler)
    assert len(found.objects) == 71 and found.outside == 0
    assert {chip for chip in found.by_chip()} == {"r0000_c0000", "r0000_c0001", "r0001_c0000",
                                                   "r0001_c0001"}
    assert {item.damage for item in found.objects} >= {Damage.DESTROYED, Damage.NO_DAMAGE}
    with pytest.raises(InputError, match="does not exist"):
        read_xbd_objects(real_xbd / "labels" / "nope.json", tiler)


def test_with_overlap_each_object_goes_to_the_chip_centred_nearest(geotiff_dir):
    from geovlm.scenes.tiling import cell_footprints

    labels = geotiff_dir.parent / "vector/solaris/geotiff_labels.geojson"
    with SceneTiler(geotiff_dir / SPACENET, TilingOptions(256, overlap=128)) as tiler:
        found = read_vector_objects(labels, tiler)
        cells = cell_footprints(tiler)
    assert len(found.objects) == 43
    for item in found.objects:
        centre = item.polygon.centroid
        holding = [chip for chip, outline in cells.items() if outline.intersects(centre)]
        assert len(holding) >= 1 and item.chip_id in holding
        distances = {chip: cells[chip].centroid.distance(centre) for chip in holding}
        assert distances[item.chip_id] == min(distances.values())
        assert item.cut == (not cells[item.chip_id].covers(item.polygon))
