# The online store: Memorystore for Redis, highly available, reachable from the region's private
# network only, AUTH on, TLS in transit, encrypted at rest with the region's key.

resource "google_redis_instance" "online" {
  project                 = var.project_id
  name                    = local.name
  display_name            = "atelier online store (${var.region_code})"
  tier                    = "STANDARD_HA"
  memory_size_gb          = var.redis_memory_gb
  region                  = var.location
  redis_version           = "REDIS_7_2"
  authorized_network      = google_compute_network.vpc.id
  connect_mode            = "PRIVATE_SERVICE_ACCESS"
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"
  customer_managed_key    = google_kms_crypto_key.key["redis"].id
  labels                  = local.labels

  persistence_config {
    persistence_mode    = "RDB"
    rdb_snapshot_period = "ONE_HOUR"
  }

  maintenance_policy {
    weekly_maintenance_window {
      day = "SUNDAY"
      start_time {
        hours   = 3
        minutes = 0
      }
    }
  }

  depends_on = [google_service_networking_connection.private_services, google_kms_crypto_key_iam_member.agents]
}
