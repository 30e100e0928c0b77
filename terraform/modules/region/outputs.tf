output "location" {
  value = var.location
}

output "bucket" {
  value = google_storage_bucket.data.name
}

output "bigquery_dataset" {
  value = google_bigquery_dataset.offline.dataset_id
}

output "redis_host" {
  value = google_redis_instance.online.host
}

output "redis_port" {
  value = google_redis_instance.online.port
}

output "redis_auth_string" {
  value     = google_redis_instance.online.auth_string
  sensitive = true
}

output "redis_ca_certs" {
  value     = [for c in google_redis_instance.online.server_ca_certs : c.cert]
  sensitive = true
}

output "artifact_registry" {
  value = "${var.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.bentos.repository_id}"
}

output "gke_cluster" {
  value = google_container_cluster.bentos.name
}

output "kms_keys" {
  value = { for k, v in google_kms_crypto_key.key : k => v.id }
}

output "service_accounts" {
  value = merge(
    {
      platform = google_service_account.platform.email
      serving  = google_service_account.serving.email
      nodes    = google_service_account.nodes.email
    },
    { for m, sa in google_service_account.maison : "maison:${m}" => sa.email },
  )
}

output "secrets" {
  value = { for k, v in google_secret_manager_secret.serving : k => v.id }
}
