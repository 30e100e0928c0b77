# Offline data: the Parquet lake and model artifacts in a bucket, feature tables in BigQuery;
# both in the region's location, both encrypted with the region's keys, neither ever public.

resource "google_storage_bucket" "data" {
  project                     = var.project_id
  name                        = "${var.project_id}-${local.name}"
  location                    = upper(var.location)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = true
  }

  encryption {
    default_kms_key_name = google_kms_crypto_key.key["storage"].id
  }

  # checkov:skip=CKV_GCP_62: access to the bucket is recorded by Cloud Audit Logs (google_project_iam_audit_config.data_access), not by legacy usage logs

  lifecycle_rule {
    condition {
      num_newer_versions = 5
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.agents]
}

resource "google_bigquery_dataset" "offline" {
  project                    = var.project_id
  dataset_id                 = "atelier"
  location                   = var.location
  description                = "atelier's offline feature store for region ${var.region_code}."
  delete_contents_on_destroy = false
  labels                     = local.labels

  default_encryption_configuration {
    kms_key_name = google_kms_crypto_key.key["bigquery"].id
  }

  depends_on = [google_kms_crypto_key_iam_member.agents]
}

resource "google_artifact_registry_repository" "bentos" {
  project       = var.project_id
  location      = var.location
  repository_id = local.name
  format        = "DOCKER"
  description   = "Bento images of the regional recommendation services."
  kms_key_name  = google_kms_crypto_key.key["artifacts"].id
  labels        = local.labels

  docker_config {
    immutable_tags = true
  }

  depends_on = [google_kms_crypto_key_iam_member.agents]
}
