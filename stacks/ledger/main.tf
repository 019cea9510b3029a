# The "ledger" application stack, re-applied in the target region during a failover.
#
# It uses only Terraform's built-in `terraform_data` resource, so `terraform init` needs no
# provider download and the stack works offline (the embedded demo world, CI). A real stack
# would declare aws_* resources the same way: everything region-specific comes in through
# variables, and the outputs tell later runbook steps where the application now lives.

terraform {
  # terraform_data needs 1.4; dr-engine's S3 backend settings need 1.6.
  required_version = ">= 1.6"

  # Partial configuration: dr-engine passes bucket, key, region, endpoint and locking with
  # -backend-config, pointing at the TARGET region's state bucket.
  backend "s3" {}
}

variable "dr_region" {
  description = "Region the stack is applied in (set by dr-engine as TF_VAR_dr_region)."
  type        = string
}

variable "dr_aws_region" {
  description = "AWS region name of that region (set by dr-engine)."
  type        = string
  default     = ""
}

variable "app_address" {
  description = "Address the ledger service listens on in this region."
  type        = string
}

variable "app_port" {
  description = "Port of the ledger service."
  type        = number
  default     = 18080
}

variable "health_path" {
  description = "HTTP path of the health endpoint."
  type        = string
  default     = "/healthz"
}

variable "replicas" {
  description = "How many ledger workers the region runs."
  type        = number
  default     = 2
}

locals {
  endpoint = "http://${var.app_address}:${var.app_port}"
}

# The ledger's database endpoint in this region.
resource "terraform_data" "database" {
  input = {
    region  = var.dr_region
    address = var.app_address
    engine  = "postgres"
  }
}

# The application tier; replaced when the database it points at is replaced.
resource "terraform_data" "app" {
  input = {
    region   = var.dr_region
    endpoint = local.endpoint
    replicas = var.replicas
    database = terraform_data.database.id
  }
  triggers_replace = [terraform_data.database.id]
}

# The public name of the service in this region.
resource "terraform_data" "service_record" {
  input = {
    name   = "ledger.${var.dr_region}.internal"
    target = var.app_address
  }
}

output "endpoint" {
  description = "Base URL of the ledger service in this region."
  value       = local.endpoint
}

output "health_url" {
  description = "Health endpoint later steps probe."
  value       = "${local.endpoint}${var.health_path}"
}

output "address" {
  description = "Address traffic should be shifted to."
  value       = var.app_address
}

output "region" {
  description = "Region the stack was applied in."
  value       = var.dr_region
}

output "service_name" {
  description = "DNS name of the service in this region."
  value       = terraform_data.service_record.output.name
}

output "app_id" {
  description = "Identity of the application tier (changes when it is replaced)."
  value       = terraform_data.app.id
}
