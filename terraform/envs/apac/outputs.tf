output "region" {
  value     = module.region
  sensitive = true
}
