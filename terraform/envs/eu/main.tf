# Region "eu": a thin root over modules/region. Its location comes from atelier/regions.json,
# the same table the Python code reads.

locals {
  region = "eu"
  table  = jsondecode(file("${path.module}/../../../atelier/regions.json")).regions[local.region]
}

provider "google" {
  project = var.project_id
  region  = local.table.location
}

module "region" {
  source      = "../../modules/region"
  project_id  = var.project_id
  region_code = local.region
  location    = local.table.location
  maisons     = var.maisons
  # Kubernetes RBAC through the group's directory
  gke_security_group = var.gke_security_group
  labels             = { data_residency = lower(replace(local.table.name, "-", "_")) }
}
