terraform {
  backend "s3" {}
}

resource "terraform_data" "ok" {
  input = "fine"
}

resource "terraform_data" "typo" {
  inptu = "misspelled argument"
}
