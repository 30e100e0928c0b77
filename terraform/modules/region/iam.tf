# Identities, least privilege. Workloads run as Kubernetes service accounts bound to these
# through Workload Identity; nobody holds keys to a service account.
#
# platform  materializes features, trains, publishes bentos: reads and writes the region's data.
# serving   the bentos: reads the registry and models; online features come over the private
#           network with the Memorystore AUTH string (a Kubernetes secret), not through IAM.
# nodes     the GKE nodes: logs, metrics, pulling images.
# maisons   one identity per maison; maisons read features through the platform, which applies
#           the Feast permissions of feature_repo/, so these hold no direct data roles.

resource "google_service_account" "nodes" {
  project      = var.project_id
  account_id   = "${local.name}-nodes"
  display_name = "atelier ${var.region_code} GKE nodes"
}

resource "google_service_account" "platform" {
  project      = var.project_id
  account_id   = "${local.name}-platform"
  display_name = "atelier ${var.region_code} platform jobs"
}

resource "google_service_account" "serving" {
  project      = var.project_id
  account_id   = "${local.name}-serving"
  display_name = "atelier ${var.region_code} recommendation services"
}

resource "google_service_account" "maison" {
  for_each     = toset(var.maisons)
  project      = var.project_id
  account_id   = trimsuffix(substr("${var.region_code}-${each.value}", 0, 30), "-")
  display_name = "Maison ${each.value} (${var.region_code})"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset(["roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/monitoring.viewer", "roles/stackdriver.resourceMetadata.writer"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_artifact_registry_repository_iam_member" "nodes_pull" {
  project    = var.project_id
  location   = var.location
  repository = google_artifact_registry_repository.bentos.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_artifact_registry_repository_iam_member" "platform_push" {
  project    = var.project_id
  location   = var.location
  repository = google_artifact_registry_repository.bentos.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.platform.email}"
}

resource "google_storage_bucket_iam_member" "platform" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.platform.email}"
}

resource "google_storage_bucket_iam_member" "serving" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.serving.email}"
}

resource "google_bigquery_dataset_iam_member" "platform" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.offline.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.platform.email}"
}

resource "google_project_iam_member" "platform_jobs" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.platform.email}"
}

# The platform wraps Parquet data keys with the region's master key (and nothing else does).
resource "google_kms_crypto_key_iam_member" "platform_offline_data" {
  crypto_key_id = google_kms_crypto_key.key["offline-data"].id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${google_service_account.platform.email}"
}

resource "google_service_account_iam_member" "workload_identity" {
  for_each = merge(
    {
      platform = { sa = google_service_account.platform.name, ksa = "atelier/platform" }
      serving  = { sa = google_service_account.serving.name, ksa = "atelier/recommender" }
    },
    { for m, sa in google_service_account.maison : "maison-${m}" => { sa = sa.name, ksa = "maisons/${m}" } },
  )
  service_account_id = each.value.sa
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${each.value.ksa}]"
}
