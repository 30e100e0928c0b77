# The serving cluster: private, regional, Workload Identity, secrets encrypted with the region's
# key; a CPU pool and a GPU pool (one NVIDIA GPU per node, drivers installed by GKE) for bentos.

resource "google_container_cluster" "bentos" {
  provider                    = google
  project                     = var.project_id
  name                        = local.name
  location                    = var.location
  network                     = google_compute_network.vpc.id
  subnetwork                  = google_compute_subnetwork.nodes.id
  remove_default_node_pool    = true
  initial_node_count          = 1
  deletion_protection         = true
  enable_shielded_nodes       = true
  enable_intranode_visibility = true
  resource_labels             = { app = "atelier", region = var.region_code, component = "serving" }

  release_channel {
    channel = "REGULAR"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = true
    master_ipv4_cidr_block  = var.master_cidr
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.admin_cidrs
      content {
        cidr_block   = cidr_blocks.value
        display_name = "admin"
      }
    }
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  # GKE's Secret Manager add-on (its CSI driver, secrets-store-gke.csi.k8s.io): the bentos'
  # SecretProviderClass (`atelier deploy manifests`) reads the API tokens and the Memorystore AUTH
  # string from secrets.tf when a pod starts, so no value is ever written in a manifest.
  secret_manager_config {
    enabled = true
  }

  database_encryption {
    state    = "ENCRYPTED"
    key_name = google_kms_crypto_key.key["gke"].id
  }

  network_policy {
    enabled = true
  }

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  # Kubernetes RBAC is granted to Google Groups of the group's directory, not to individuals.
  authenticator_groups_config {
    security_group = var.gke_security_group
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  # Only for the short-lived default pool that remove_default_node_pool deletes.
  node_config {
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.agents]
}

locals {
  pools = {
    cpu = { machine = var.cpu_machine_type, min = 1, max = var.cpu_nodes_max, gpu = false }
    gpu = { machine = var.gpu_machine_type, min = 0, max = var.gpu_nodes_max, gpu = true }
  }
}

resource "google_container_node_pool" "pool" {
  for_each = local.pools
  project  = var.project_id
  name     = each.key
  location = var.location
  cluster  = google_container_cluster.bentos.name

  autoscaling {
    min_node_count = each.value.min
    max_node_count = each.value.max
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type      = each.value.machine
    image_type        = "COS_CONTAINERD"
    disk_type         = "pd-balanced"
    disk_size_gb      = 100
    boot_disk_kms_key = google_kms_crypto_key.key["gke"].id
    service_account   = google_service_account.nodes.email
    oauth_scopes      = ["https://www.googleapis.com/auth/cloud-platform"]
    labels            = merge(local.labels, { pool = each.key })
    metadata = {
      disable-legacy-endpoints = "true"
    }

    dynamic "guest_accelerator" {
      for_each = each.value.gpu ? [1] : []
      content {
        type  = var.gpu_type
        count = 1
        gpu_driver_installation_config {
          gpu_driver_version = "LATEST"
        }
      }
    }

    dynamic "taint" {
      for_each = each.value.gpu ? [1] : []
      content {
        key    = "nvidia.com/gpu"
        value  = "present"
        effect = "NO_SCHEDULE"
      }
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}
