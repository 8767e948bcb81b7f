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


# A stack on auth.mode = "entra" with drills: the API's identifier URI and Azure Load Testing's
# engine identity (stacks/drills.py).
ENGINE_IDENTITY = {
    "id": "/subscriptions/0000/resourceGroups/rg-global/providers/Microsoft.ManagedIdentity/"
    "userAssignedIdentities/id-todo-dev-load-engines",
    "client_id": "3f6e1a2b-7c4d-4e8f-9a0b-1c2d3e4f5a6b",
}
ENTRA_OUTPUTS = {
    "api_identifier_uri": "api://c0ffee00-1111-4222-8333-444455556666",
    "load_test_engine_identity": ENGINE_IDENTITY,
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
