terraform {
  required_version = ">= 99.0"
  backend "s3" {}
}
resource "terraform_data" "x" {
  input = 1
}
