# One data-residency region of atelier: every resource here lives in var.location, and every
# data store is encrypted with a customer-managed key from the region's own key ring.

locals {
  name   = "atelier-${var.region_code}"
  labels = merge(var.labels, { app = "atelier", region = var.region_code })
  # Google-managed service agents that encrypt on our behalf (CMEK).
  agents = {
    storage  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
    bigquery = "serviceAccount:${data.google_bigquery_default_service_account.bq.email}"
    redis    = "serviceAccount:service-${data.google_project.this.number}@cloud-redis.iam.gserviceaccount.com"
    registry = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"
    gke      = "serviceAccount:service-${data.google_project.this.number}@container-engine-robot.iam.gserviceaccount.com"
    disks    = "serviceAccount:service-${data.google_project.this.number}@compute-system.iam.gserviceaccount.com"
    secrets  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-secretmanager.iam.gserviceaccount.com"
  }
}

data "google_project" "this" {
  project_id = var.project_id
}

data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

data "google_bigquery_default_service_account" "bq" {
  project = var.project_id
}

# Data access to the stores is logged (who read which client data, when).
resource "google_project_iam_audit_config" "data_access" {
  for_each = toset(["storage.googleapis.com", "bigquery.googleapis.com", "cloudkms.googleapis.com", "redis.googleapis.com", "secretmanager.googleapis.com"])
  project  = var.project_id
  service  = each.value
  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}
