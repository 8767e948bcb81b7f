"""Azure regions this product can pair: name -> short code, display name, paired region and
coordinates.

Pairs are Azure's published region pairs (learn.microsoft.com, "Azure region pairs").
Latitude and longitude are Azure's own, as `az account list-locations` returns them
(`metadata.latitude` / `metadata.longitude` of ARM's Subscriptions - List Locations, api-version
2023-07-01; copied from the snapshot Azure/terraform-azurerm-avm-utl-regions keeps in
modules/cached-data/locations.tf.json, commit e9d62409, 2026-03-12).
One fact, one place: naming (short codes), the gateway policy (display names, which APIM
reports in `context.Deployment.Region`) and config validation all read this table.
"""

from math import asin, cos, radians, sin, sqrt
from typing import NamedTuple

EARTH_RADIUS_KM = 6_371.0  # mean radius; a sphere is within 0.5 % of the ellipsoid here


class Region(NamedTuple):
    short: str
    display_name: str
    pair: str
    latitude: float
    longitude: float


REGIONS: dict[str, Region] = {
    "australiaeast": Region("aue", "Australia East", "australiasoutheast", -33.86, 151.2094),
    "australiasoutheast": Region(
        "ause", "Australia Southeast", "australiaeast", -37.8136, 144.9631
    ),
    "australiacentral": Region("auc", "Australia Central", "australiacentral2", -35.3075, 149.1244),
    "australiacentral2": Region(
        "auc2", "Australia Central 2", "australiacentral", -35.3075, 149.1244
    ),
    "eastus": Region("eus", "East US", "westus", 37.3719, -79.8164),
    "westus": Region("wus", "West US", "eastus", 37.783, -122.417),
    "eastus2": Region("eus2", "East US 2", "centralus", 36.6681, -78.3889),
    "centralus": Region("cus", "Central US", "eastus2", 41.5908, -93.6208),
    "northcentralus": Region("ncus", "North Central US", "southcentralus", 41.8819, -87.6278),
    "southcentralus": Region("scus", "South Central US", "northcentralus", 29.4167, -98.5),
    "westus2": Region("wus2", "West US 2", "westcentralus", 47.233, -119.852),
    "westcentralus": Region("wcus", "West Central US", "westus2", 40.89, -110.234),
    "westus3": Region("wus3", "West US 3", "eastus", 33.448376, -112.074036),
    "canadacentral": Region("cac", "Canada Central", "canadaeast", 43.653, -79.383),
    "canadaeast": Region("cae", "Canada East", "canadacentral", 46.817, -71.217),
    "northeurope": Region("neu", "North Europe", "westeurope", 53.3478, -6.2597),
    "westeurope": Region("weu", "West Europe", "northeurope", 52.3667, 4.9),
    "uksouth": Region("uks", "UK South", "ukwest", 50.941, -0.799),
    "ukwest": Region("ukw", "UK West", "uksouth", 53.427, -3.084),
    "francecentral": Region("frc", "France Central", "francesouth", 46.3772, 2.373),
    "francesouth": Region("frs", "France South", "francecentral", 43.8345, 2.1972),
    "germanywestcentral": Region(
        "gwc", "Germany West Central", "germanynorth", 50.110924, 8.682127
    ),
    "germanynorth": Region("gn", "Germany North", "germanywestcentral", 53.073635, 8.806422),
    "switzerlandnorth": Region("chn", "Switzerland North", "switzerlandwest", 47.451542, 8.564572),
    "switzerlandwest": Region("chw", "Switzerland West", "switzerlandnorth", 46.204391, 6.143158),
    "norwayeast": Region("noe", "Norway East", "norwaywest", 59.913868, 10.752245),
    "norwaywest": Region("now", "Norway West", "norwayeast", 58.969975, 5.733107),
    "japaneast": Region("jpe", "Japan East", "japanwest", 35.68, 139.77),
    "japanwest": Region("jpw", "Japan West", "japaneast", 34.6939, 135.5022),
    "koreacentral": Region("krc", "Korea Central", "koreasouth", 37.5665, 126.978),
    "koreasouth": Region("krs", "Korea South", "koreacentral", 35.1796, 129.0756),
    "eastasia": Region("ea", "East Asia", "southeastasia", 22.267, 114.188),
    "southeastasia": Region("sea", "Southeast Asia", "eastasia", 1.283, 103.833),
    "centralindia": Region("inc", "Central India", "southindia", 18.5822, 73.9197),
    "southindia": Region("ins", "South India", "centralindia", 12.9822, 80.1636),
    "southafricanorth": Region("san", "South Africa North", "southafricawest", -25.73134, 28.21837),
    "southafricawest": Region(
        "saw", "South Africa West", "southafricanorth", -34.075691, 18.843266
    ),
    "uaenorth": Region("uan", "UAE North", "uaecentral", 25.266666, 55.316666),
    "uaecentral": Region("uac", "UAE Central", "uaenorth", 24.466667, 54.366669),
    "brazilsouth": Region("brs", "Brazil South", "southcentralus", -23.55, -46.633),
}


def distance_km(a: str, b: str) -> float:
    """Great-circle (haversine) distance between two regions' coordinates."""
    lat_a, lon_a = radians(REGIONS[a].latitude), radians(REGIONS[a].longitude)
    lat_b, lon_b = radians(REGIONS[b].latitude), radians(REGIONS[b].longitude)
    h = sin((lat_b - lat_a) / 2) ** 2 + cos(lat_a) * cos(lat_b) * sin((lon_b - lon_a) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * asin(sqrt(h))
