# A stack whose apply takes `delay` seconds: holds the state lock meanwhile.
terraform {
  backend "s3" {}
}
variable "delay" {
  type    = number
  default = 60
}
variable "pidfile" {
  type    = string
  default = "/dev/null"
}
resource "terraform_data" "slow" {
  input = var.delay
  provisioner "local-exec" {
    command = "echo $$ > ${var.pidfile}; exec sleep ${var.delay}"
  }
}
