variable "project_id" {
  description = "The region's own Google Cloud project (one project per region keeps data and IAM apart)."
  type        = string
}

variable "maisons" {
  description = "Maisons given an identity in this region."
  type        = list(string)
  default     = []
}

variable "gke_security_group" {
  description = "gke-security-groups@<the group's domain>"
  type        = string
}
