"""A tiny GeoIP2 City database for tests, written with mmdb-writer."""

from __future__ import annotations

from pathlib import Path

CITIES = {
    "81.2.69.0/24": ("GB", "London", 51.5142, -0.0931),
    "89.160.20.0/24": ("SE", "Linköping", 58.4167, 15.6167),
}


def write_city_db(path: Path) -> Path:
    from mmdb_writer import MmdbF64, MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City")
    for network, (iso, city, lat, lon) in CITIES.items():
        writer.insert_network(
            IPSet([network]),
            {
                "country": {"iso_code": iso, "names": {"en": iso}},
                "city": {"names": {"en": city}},
                "location": {"latitude": MmdbF64(lat), "longitude": MmdbF64(lon)},
            },
        )
    writer.to_db_file(str(path))
    return path
