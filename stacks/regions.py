"""Azure regions this product can pair: name -> short code, display name and paired region.

Pairs are Azure's published region pairs (learn.microsoft.com, "Azure region pairs").
One fact, one place: naming (short codes), the gateway policy (display names, which APIM
reports in `context.Deployment.Region`) and config validation all read this table.
"""

from typing import NamedTuple


class Region(NamedTuple):
    short: str
    display_name: str
    pair: str


REGIONS: dict[str, Region] = {
    "australiaeast": Region("aue", "Australia East", "australiasoutheast"),
    "australiasoutheast": Region("ause", "Australia Southeast", "australiaeast"),
    "australiacentral": Region("auc", "Australia Central", "australiacentral2"),
    "australiacentral2": Region("auc2", "Australia Central 2", "australiacentral"),
    "eastus": Region("eus", "East US", "westus"),
    "westus": Region("wus", "West US", "eastus"),
    "eastus2": Region("eus2", "East US 2", "centralus"),
    "centralus": Region("cus", "Central US", "eastus2"),
    "northcentralus": Region("ncus", "North Central US", "southcentralus"),
    "southcentralus": Region("scus", "South Central US", "northcentralus"),
    "westus2": Region("wus2", "West US 2", "westcentralus"),
    "westcentralus": Region("wcus", "West Central US", "westus2"),
    "westus3": Region("wus3", "West US 3", "eastus"),
    "canadacentral": Region("cac", "Canada Central", "canadaeast"),
    "canadaeast": Region("cae", "Canada East", "canadacentral"),
    "northeurope": Region("neu", "North Europe", "westeurope"),
    "westeurope": Region("weu", "West Europe", "northeurope"),
    "uksouth": Region("uks", "UK South", "ukwest"),
    "ukwest": Region("ukw", "UK West", "uksouth"),
    "francecentral": Region("frc", "France Central", "francesouth"),
    "francesouth": Region("frs", "France South", "francecentral"),
    "germanywestcentral": Region("gwc", "Germany West Central", "germanynorth"),
    "germanynorth": Region("gn", "Germany North", "germanywestcentral"),
    "switzerlandnorth": Region("chn", "Switzerland North", "switzerlandwest"),
    "switzerlandwest": Region("chw", "Switzerland West", "switzerlandnorth"),
    "norwayeast": Region("noe", "Norway East", "norwaywest"),
    "norwaywest": Region("now", "Norway West", "norwayeast"),
    "japaneast": Region("jpe", "Japan East", "japanwest"),
    "japanwest": Region("jpw", "Japan West", "japaneast"),
    "koreacentral": Region("krc", "Korea Central", "koreasouth"),
    "koreasouth": Region("krs", "Korea South", "koreacentral"),
    "eastasia": Region("ea", "East Asia", "southeastasia"),
    "southeastasia": Region("sea", "Southeast Asia", "eastasia"),
    "centralindia": Region("inc", "Central India", "southindia"),
    "southindia": Region("ins", "South India", "centralindia"),
    "southafricanorth": Region("san", "South Africa North", "southafricawest"),
    "southafricawest": Region("saw", "South Africa West", "southafricanorth"),
    "uaenorth": Region("uan", "UAE North", "uaecentral"),
    "uaecentral": Region("uac", "UAE Central", "uaenorth"),
    "brazilsouth": Region("brs", "Brazil South", "southcentralus"),
}
