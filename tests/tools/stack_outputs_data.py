"""A deployed stack's `terraform output -json`, as the deploy helpers' tests feed it."""


COSMOS_OUTPUTS = {
    "cosmos_account_name": "cosmos-todo-dev",
    "cosmos_resource_group_name": "rg-global",
    "cosmos_regions": ["australiaeast", "australiasoutheast"],
    "table_name": "TodoItems",
}

WORKBOOK_OUTPUTS = {
    "workbook_id": "/subscriptions/0000/resourceGroups/rg-global/providers/"
    "microsoft.insights/workbooks/11111111-2222-3333-4444-555555555555",
    "workbook_url": "https://portal.azure.com/#@/resource/subscriptions/0000/resourceGroups/"
    "rg-global/providers/microsoft.insights/workbooks/11111111-2222-3333-4444-555555555555/workbook",
}


def raw_outputs(**overrides) -> dict:
    values = {
        "gateway_urls": ["https://apim-todo-dev.azure-api.net"],
        "traffic_manager_fqdns": ["todo-dev.trafficmanager.net"],
        "web_app_names": ["app-weu", "app-neu"],
        "web_app_hostnames": ["app-weu.azurewebsites.net", "app-neu.azurewebsites.net"],
        "resource_group_names": ["rg-global", "rg-weu", "rg-neu"],
        "web_app_resource_group_names": ["rg-weu", "rg-neu"],
        "subscription_key": "sub-key-0123",
        "health_check_key": "health-key-0123456789",
        "api_path": "todo",
    }
    values.update(overrides)
    values = {k: v for k, v in values.items() if v is not None}  # None: leave the output out
    return {k: {"sensitive": k.endswith("_key"), "type": "x", "value": v} for k, v in values.items()}
