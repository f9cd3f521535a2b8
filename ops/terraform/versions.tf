# Terraform and provider versions. The tests run `terraform init` against a local filesystem
# mirror holding hashicorp/aws 5.100.0, so the constraint must admit that version.
terraform {
  required_version = ">= 1.9.0" # validations that refer to other variables

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60.0, < 6.0.0"
    }
  }
}
