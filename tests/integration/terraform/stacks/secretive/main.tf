terraform {
  backend "s3" {}
}
variable "db_password" {
  type = string
}
resource "terraform_data" "db" {
  input = "connect with ${var.db_password}"
}
output "connection" {
  value = terraform_data.db.input
}
