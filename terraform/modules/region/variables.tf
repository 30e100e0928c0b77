variable "project_id" {
  description = "Google Cloud project that hosts this region."
  type        = string
}

variable "region_code" {
  description = "Region code from atelier/regions.json (eu, us, apac)."
  type        = string
}

variable "location" {
  description = "Google Cloud location of every regional resource (from atelier/regions.json)."
  type        = string
}

variable "maisons" {
  description = "Maisons that get a service account of their own (slugs, as in the catalog)."
  type        = list(string)
  default     = []
}

variable "subnet_cidr" {
  description = "Primary range of the region's subnet (nodes)."
  type        = string
  default     = "10.10.0.0/20"
}

variable "pods_cidr" {
  description = "Secondary range for GKE pods."
  type        = string
  default     = "10.20.0.0/16"
}

variable "services_cidr" {
  description = "Secondary range for GKE services."
  type        = string
  default     = "10.30.0.0/20"
}

variable "master_cidr" {
  description = "Range of the private GKE control plane."
  type        = string
  default     = "172.16.0.0/28"
}

variable "admin_cidrs" {
  description = "Private ranges (VPN, bastion) allowed to reach the GKE control plane."
  type        = list(string)
  default     = ["10.255.0.0/24"]
}

variable "gke_security_group" {
  description = "Google Group whose member groups receive Kubernetes RBAC (gke-security-groups@<your domain>)."
  type        = string
}

variable "redis_memory_gb" {
  description = "Memorystore size. About 1 GB per million clients with 20 features."
  type        = number
  default     = 5
}

variable "cpu_machine_type" {
  type    = string
  default = "n2-standard-8"
}

variable "cpu_nodes_max" {
  type    = number
  default = 10
}

variable "gpu_machine_type" {
  type    = string
  default = "g2-standard-8"
}

variable "gpu_type" {
  type    = string
  default = "nvidia-l4"
}

variable "gpu_nodes_max" {
  type    = number
  default = 4
}

variable "key_rotation_period" {
  description = "How often Cloud KMS makes a new primary version of each key (seconds, as a string with 's')."
  type        = string
  default     = "7776000s" # 90 days
}

variable "labels" {
  type    = map(string)
  default = {}
}
