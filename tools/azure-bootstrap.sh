#!/usr/bin/env bash
# One-time Azure + GitHub setup for the delivery workflows (.github/workflows). Run it once, by
# hand, as someone who is Owner (or Contributor + User Access Administrator) of the subscription
# and admin of the GitHub repository; it is not run by the suite or by CI. Re-running it is safe:
# existing resources are reused.
#
#   az login && az account set --subscription <subscription that holds the Terraform state>
#   gh auth login
#   GITHUB_REPO=contoso/todo-api STATE_ACCOUNT=todoapitfstate42 PROD_REVIEWER=alice \
#   DEV_SUBSCRIPTION_ID=<dev subscription> PROD_SUBSCRIPTION_ID=<prod subscription> \
#     tools/azure-bootstrap.sh
#
# Optional: KEY_VAULT_ADMIN_GROUP=<object id of an Entra group> also makes that group Key Vault
# Administrator on both vaults (for people who must manage secrets by hand).
#
# Isolation: dev and prod live in separate subscriptions (the landing-zone practice). Each
# deploy identity holds roles in its own subscription only, and may write only its own state
# container: the dev identity cannot change prod resources, read prod secrets or overwrite
# prod state, whoever gets a dev token.
#
# Creates: the Terraform state storage account (Entra ID auth only, versioned blobs) with one
# container per environment (tfstate-dev, tfstate-prod) and an empty state blob per stack (so
# the read-only identity can plan before the first deploy), three identities with federated
# credentials (no client secrets anywhere):
#   todo-api-github-plan   read-only, both subscriptions: PR plans (subject pull_request),
#                          nightly drift and the deploy workflow's plan job (subject
#                          ref:refs/heads/main)
#   todo-api-github-dev    deploys dev   (subject environment:dev), dev subscription only
#   todo-api-github-prod   deploys prod  (subject environment:prod), prod subscription only
# their role assignments, the GitHub environments dev and prod (both: deployments from main
# only; prod: a required reviewer who is not the person who started the run), the secret
# PLAN_BUNDLE_KEY (encrypts the saved plan between the plan and the deploy job), the
# repository and environment variables, and the "drift" issue label.
set -euo pipefail

: "${GITHUB_REPO:?set GITHUB_REPO=owner/name}"
: "${STATE_ACCOUNT:?set STATE_ACCOUNT to a globally unique storage account name (3-24 a-z0-9)}"
: "${PROD_REVIEWER:?set PROD_REVIEWER to the GitHub login that approves prod deploys}"
: "${DEV_SUBSCRIPTION_ID:?set DEV_SUBSCRIPTION_ID to the subscription id of dev}"
: "${PROD_SUBSCRIPTION_ID:?set PROD_SUBSCRIPTION_ID to the subscription id of prod}"
if [[ "$DEV_SUBSCRIPTION_ID" == "$PROD_SUBSCRIPTION_ID" ]]; then
  echo "error: DEV_SUBSCRIPTION_ID and PROD_SUBSCRIPTION_ID must differ: the subscription is" \
    "the boundary that keeps the dev deploy identity away from prod (docs/delivery.md)" >&2
  exit 2
fi
KEY_VAULT_ADMIN_GROUP="${KEY_VAULT_ADMIN_GROUP:-}"
LOCATION="${LOCATION:-australiaeast}"
STATE_RESOURCE_GROUP="${STATE_RESOURCE_GROUP:-todo-api-tfstate}"
ENVIRONMENTS=(dev prod)
ISSUER="https://token.actions.githubusercontent.com"
AUDIENCE="api://AzureADTokenExchange"

TENANT_ID=$(az account show --query tenantId --output tsv)
declare -A SUBSCRIPTION=([dev]="$DEV_SUBSCRIPTION_ID" [prod]="$PROD_SUBSCRIPTION_ID")
ME=$(az ad signed-in-user show --query id --output tsv)

echo "== state storage: ${STATE_RESOURCE_GROUP}/${STATE_ACCOUNT} (containers tfstate-dev, tfstate-prod)"
az group create --name "$STATE_RESOURCE_GROUP" --location "$LOCATION" --output none
az storage account create --name "$STATE_ACCOUNT" --resource-group "$STATE_RESOURCE_GROUP" \
  --location "$LOCATION" --sku Standard_ZRS --kind StorageV2 --min-tls-version TLS1_2 \
  --allow-blob-public-access false --allow-shared-key-access false --output none
az storage account blob-service-properties update --account-name "$STATE_ACCOUNT" \
  --resource-group "$STATE_RESOURCE_GROUP" --enable-versioning true \
  --enable-delete-retention true --delete-retention-days 30 --output none
STATE_ACCOUNT_ID=$(az storage account show --name "$STATE_ACCOUNT" \
  --resource-group "$STATE_RESOURCE_GROUP" --query id --output tsv)
declare -A CONTAINER_SCOPE
for env in "${ENVIRONMENTS[@]}"; do
  CONTAINER_SCOPE[$env]="${STATE_ACCOUNT_ID}/blobServices/default/containers/tfstate-${env}"
done
# Shared keys are off: you need a data-plane role to create the containers.
az role assignment create --assignee-object-id "$ME" --assignee-principal-type User \
  --role "Storage Blob Data Contributor" --scope "$STATE_ACCOUNT_ID" --output none
echo "   waiting for the role assignment to reach the storage data plane"
sleep "${ROLE_PROPAGATION_SECONDS:-60}"
EMPTY_STATE=$(mktemp)
trap 'rm -f "$EMPTY_STATE"' EXIT
for env in "${ENVIRONMENTS[@]}"; do
  az storage container create --name "tfstate-${env}" --account-name "$STATE_ACCOUNT" \
    --auth-mode login --output none
  # First run: the azurerm backend creates a missing state blob (a write and a lease), which
  # the read-only plan identity cannot do; an empty state (serial 0) lets PR plans and drift
  # run before the first deploy. Never overwrites an existing state.
  if [[ "$(az storage blob exists --account-name "$STATE_ACCOUNT" --auth-mode login \
        --container-name "tfstate-${env}" --name "todo-api-${env}.tfstate" --query exists \
        --output tsv)" != "true" ]]; then
    printf '{"version": 4, "terraform_version": "%s", "serial": 0, "lineage": "%s", "outputs": {}, "resources": [], "check_results": null}\n' \
      "$(cat "$(dirname "$0")/../.github/versions/terraform")" "$(cat /proc/sys/kernel/random/uuid)" > "$EMPTY_STATE"
    az storage blob upload --account-name "$STATE_ACCOUNT" --auth-mode login \
      --container-name "tfstate-${env}" --name "todo-api-${env}.tfstate" \
      --file "$EMPTY_STATE" --output none
  fi
done

# identity NAME -> prints the application (client) id; creates the app and its service principal
identity() {
  local app_id
  app_id=$(az ad app list --display-name "$1" --query "[0].appId" --output tsv)
  if [[ -z "$app_id" ]]; then
    app_id=$(az ad app create --display-name "$1" --query appId --output tsv)
  fi
  az ad sp show --id "$app_id" --output none 2>/dev/null || az ad sp create --id "$app_id" --output none
  echo "$app_id"
}

# federate APP_ID NAME SUBJECT
federate() {
  if az ad app federated-credential show --id "$1" --federated-credential-id "$2" --output none 2>/dev/null; then
    return
  fi
  az ad app federated-credential create --id "$1" --parameters "$(cat <<JSON
{"name": "$2", "issuer": "$ISSUER", "subject": "$3", "audiences": ["$AUDIENCE"]}
JSON
)" --output none
}

echo "== identities and federated credentials"
PLAN_APP_ID=$(identity todo-api-github-plan)
DEV_APP_ID=$(identity todo-api-github-dev)
PROD_APP_ID=$(identity todo-api-github-prod)
federate "$PLAN_APP_ID" pull-request "repo:${GITHUB_REPO}:pull_request"
federate "$PLAN_APP_ID" main-branch "repo:${GITHUB_REPO}:ref:refs/heads/main"
federate "$DEV_APP_ID" environment-dev "repo:${GITHUB_REPO}:environment:dev"
federate "$PROD_APP_ID" environment-prod "repo:${GITHUB_REPO}:environment:prod"

echo "== roles: plan identity (read-only)"
# Reader is not enough for `terraform plan`: refreshing web apps, API Management subscriptions,
# Log Analytics and Key Vault secrets calls list actions. Terraform keeps those values in state
# anyway, which this identity can read. No write action is granted.
az role definition create --output none --role-definition "$(cat <<JSON
{
  "Name": "todo-api plan reader",
  "Description": "terraform plan for the todo-api stacks: read everything the plan refreshes, write nothing.",
  "Actions": [
    "*/read",
    "Microsoft.Web/sites/config/list/action",
    "Microsoft.Web/sites/slots/config/list/action",
    "Microsoft.ApiManagement/service/subscriptions/listSecrets/action",
    "Microsoft.ApiManagement/service/namedValues/listValue/action",
    "Microsoft.OperationalInsights/workspaces/sharedKeys/action"
  ],
  "NotActions": [],
  "DataActions": [
    "Microsoft.KeyVault/vaults/secrets/getSecret/action",
    "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
    "Microsoft.KeyVault/vaults/certificates/read"
  ],
  "NotDataActions": [],
  "AssignableScopes": ["/subscriptions/${DEV_SUBSCRIPTION_ID}", "/subscriptions/${PROD_SUBSCRIPTION_ID}"]
}
JSON
)" 2>/dev/null || echo "   (role 'todo-api plan reader' exists: kept)"
for env in "${ENVIRONMENTS[@]}"; do
  az role assignment create --assignee "$PLAN_APP_ID" --role "todo-api plan reader" \
    --scope "/subscriptions/${SUBSCRIPTION[$env]}" --output none
  az role assignment create --assignee "$PLAN_APP_ID" --role "Storage Blob Data Reader" \
    --scope "${CONTAINER_SCOPE[$env]}" --output none
done

echo "== roles: deploy identities (dev, prod), each in its own subscription only"
# Contributor creates the resource groups and everything in them, in that environment's
# subscription only. The stacks also assign Key Vault roles (the deploy identities on the vault,
# each web app's identity as secret reader): Role Based Access Control Administrator, limited by
# a condition to exactly those two roles, again in its own subscription only. State: Blob Data
# Contributor on its own container only (the storage account itself grants nothing).
KV_ADMIN=00482a5a-887f-4fb3-b363-3b7fe8e74483    # Key Vault Administrator
KV_SECRETS_USER=4633458b-17de-408a-b874-0445c86b69e6  # Key Vault Secrets User
CONDITION="((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${KV_ADMIN}, ${KV_SECRETS_USER}})) AND ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${KV_ADMIN}, ${KV_SECRETS_USER}}))"
declare -A DEPLOY_APP_ID=([dev]="$DEV_APP_ID" [prod]="$PROD_APP_ID")
for env in "${ENVIRONMENTS[@]}"; do
  app_id=${DEPLOY_APP_ID[$env]}
  scope="/subscriptions/${SUBSCRIPTION[$env]}"
  az role assignment create --assignee "$app_id" --role Contributor --scope "$scope" --output none
  az role assignment create --assignee "$app_id" --role "Role Based Access Control Administrator" \
    --scope "$scope" --condition "$CONDITION" --condition-version 2.0 --output none
  az role assignment create --assignee "$app_id" --role "Storage Blob Data Contributor" \
    --scope "${CONTAINER_SCOPE[$env]}" --output none
done

# Key Vault Administrator goes to these object ids (config key_vault.administrator_object_ids,
# set by the workflows from AZURE_DEPLOYER_OBJECT_IDS_<ENV>), not to whoever runs Terraform:
# otherwise PR and drift plans, run by the plan identity, would show it as a replacement.
DEV_OBJECT_ID=$(az ad sp show --id "$DEV_APP_ID" --query id --output tsv)
PROD_OBJECT_ID=$(az ad sp show --id "$PROD_APP_ID" --query id --output tsv)

echo "== GitHub: environments, variables, label (${GITHUB_REPO})"
REVIEWER_ID=$(gh api "users/${PROD_REVIEWER}" --jq .id)
# dev: deployments from main only, so a writer's branch cannot get the dev OIDC token (the dev
# identity's federated subject is environment:dev). prod: main only, and a reviewer who is not
# the person who started the run (prevent_self_review).
gh api --method PUT "repos/${GITHUB_REPO}/environments/dev" --silent --input - <<JSON
{"deployment_branch_policy": {"protected_branches": false, "custom_branch_policies": true}}
JSON
gh api --method PUT "repos/${GITHUB_REPO}/environments/prod" --silent --input - <<JSON
{
  "reviewers": [{"type": "User", "id": ${REVIEWER_ID}}],
  "prevent_self_review": true,
  "deployment_branch_policy": {"protected_branches": false, "custom_branch_policies": true}
}
JSON
for env in "${ENVIRONMENTS[@]}"; do
  if ! gh api "repos/${GITHUB_REPO}/environments/${env}/deployment-branch-policies" \
      --jq '.branch_policies[].name' | grep -qx main; then
    gh api --method POST "repos/${GITHUB_REPO}/environments/${env}/deployment-branch-policies" \
      --silent -f name=main -f type=branch
  fi
done
# The saved plan travels from the plan job to the deploy job encrypted with this key
# (tools/plan_bundle.py); created once, never printed.
if ! gh secret list --repo "$GITHUB_REPO" --json name --jq '.[].name' | grep -qx PLAN_BUNDLE_KEY; then
  openssl rand -base64 32 | gh secret set PLAN_BUNDLE_KEY --repo "$GITHUB_REPO"
fi
gh variable set AZURE_TENANT_ID --repo "$GITHUB_REPO" --body "$TENANT_ID"
gh variable set AZURE_SUBSCRIPTION_ID_DEV --repo "$GITHUB_REPO" --body "$DEV_SUBSCRIPTION_ID"
gh variable set AZURE_SUBSCRIPTION_ID_PROD --repo "$GITHUB_REPO" --body "$PROD_SUBSCRIPTION_ID"
gh variable set AZURE_PLAN_CLIENT_ID --repo "$GITHUB_REPO" --body "$PLAN_APP_ID"
gh variable set TFSTATE_RESOURCE_GROUP --repo "$GITHUB_REPO" --body "$STATE_RESOURCE_GROUP"
gh variable set TFSTATE_STORAGE_ACCOUNT --repo "$GITHUB_REPO" --body "$STATE_ACCOUNT"
gh variable set AZURE_DEPLOYER_OBJECT_IDS_DEV --repo "$GITHUB_REPO" \
  --body "${DEV_OBJECT_ID}${KEY_VAULT_ADMIN_GROUP:+,${KEY_VAULT_ADMIN_GROUP}}"
gh variable set AZURE_DEPLOYER_OBJECT_IDS_PROD --repo "$GITHUB_REPO" \
  --body "${PROD_OBJECT_ID}${KEY_VAULT_ADMIN_GROUP:+,${KEY_VAULT_ADMIN_GROUP}}"
gh variable set AZURE_CLIENT_ID --repo "$GITHUB_REPO" --env dev --body "$DEV_APP_ID"
gh variable set AZURE_CLIENT_ID --repo "$GITHUB_REPO" --env prod --body "$PROD_APP_ID"
gh variable set AZURE_SUBSCRIPTION_ID --repo "$GITHUB_REPO" --env dev --body "$DEV_SUBSCRIPTION_ID"
gh variable set AZURE_SUBSCRIPTION_ID --repo "$GITHUB_REPO" --env prod --body "$PROD_SUBSCRIPTION_ID"
gh label create drift --repo "$GITHUB_REPO" --color D93F0B --force \
  --description "Infrastructure drift found by the nightly terraform plan"
# The plan labels the plan workflow puts on pull requests (tools/pr_comment.py --label-file).
for env in "${ENVIRONMENTS[@]}"; do
  for kind in "no changes:0E8A16" "changes:FBCA04" "destroys:B60205" "failed:5319E7"; do
    gh label create "plan/todo-api-${env}: ${kind%%:*}" --repo "$GITHUB_REPO" \
      --color "${kind##*:}" --force --description "Latest terraform plan of todo-api-${env}"
  done
done

echo "done: push to main deploys dev; Actions > deploy > Run workflow (prod) deploys prod."
