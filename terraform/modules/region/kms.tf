# The group's keys for this region: a key ring in the region's own location, one key per kind
# of store, rotated automatically, never destroyed by Terraform. `offline-data` is the master key
# the platform's Parquet encryption wraps its keys with (atelier.protect.keys.GcpKmsKeyStore).

locals {
  keys = {
    offline-data = "Parquet envelope encryption of client data (atelier)"
    storage      = "Cloud Storage bucket"
    bigquery     = "BigQuery offline store"
    redis        = "Memorystore online store"
    artifacts    = "Artifact Registry (bento images)"
    gke          = "GKE secrets and node boot disks"
    secrets      = "Secret Manager (the services' API tokens, the Memorystore AUTH string)"
  }
}

resource "google_kms_key_ring" "region" {
  project  = var.project_id
  name     = local.name
  location = var.location
}

resource "google_kms_crypto_key" "key" {
  for_each        = local.keys
  name            = each.key
  key_ring        = google_kms_key_ring.region.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = var.key_rotation_period
  labels          = merge(local.labels, { use = each.key })

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = "HSM"
  }

  lifecycle {
    prevent_destroy = true
  }
}

# Each service agent may use only the key of the store it encrypts.
resource "google_kms_crypto_key_iam_member" "agents" {
  for_each = {
    storage   = { key = "storage", member = local.agents.storage }
    bigquery  = { key = "bigquery", member = local.agents.bigquery }
    redis     = { key = "redis", member = local.agents.redis }
    artifacts = { key = "artifacts", member = local.agents.registry }
    gke       = { key = "gke", member = local.agents.gke }
    disks     = { key = "gke", member = local.agents.disks }
    secrets   = { key = "secrets", member = local.agents.secrets }
  }
  crypto_key_id = google_kms_crypto_key.key[each.value.key].id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value.member
}
