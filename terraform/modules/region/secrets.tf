# The secrets a regional service reads, by name (`atelier deploy manifests` references them; GKE's
# Secret Manager add-on mounts them): the calling apps' API tokens and the Memorystore AUTH
# string. Replicated in the region's location only, encrypted with the region's own key, readable
# by the serving identity alone. The AUTH string's version comes from redis.tf (it is in the state
# already); the tokens' versions are added by their owners, never through Terraform.

locals {
  secrets = {
    api-tokens = "Bearer tokens of the apps calling the regional service (JSON: app -> token)"
    redis-auth = "AUTH string of the region's Memorystore instance"
  }
}

resource "google_secret_manager_secret" "serving" {
  for_each  = local.secrets
  project   = var.project_id
  secret_id = "${local.name}-${each.key}"
  labels    = merge(local.labels, { use = each.key })
  annotations = {
    description = each.value
  }

  replication {
    user_managed {
      replicas {
        location = var.location
        customer_managed_encryption {
          kms_key_name = google_kms_crypto_key.key["secrets"].id
        }
      }
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.agents]
}

resource "google_secret_manager_secret_version" "redis_auth" {
  secret      = google_secret_manager_secret.serving["redis-auth"].id
  secret_data = google_redis_instance.online.auth_string
}

resource "google_secret_manager_secret_iam_member" "serving" {
  for_each  = google_secret_manager_secret.serving
  project   = var.project_id
  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.serving.email}"
}
