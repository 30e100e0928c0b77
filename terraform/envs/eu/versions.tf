terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.20, < 7.0"
    }
  }
  # State in a bucket of the region's project: terraform init -backend-config="bucket=<project>-tfstate"
  backend "gcs" {
    prefix = "atelier/eu"
  }
}
