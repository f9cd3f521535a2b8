# One provider configuration per supported host region, plus one for the bucket.
#
# Terraform (unlike OpenTofu) cannot create provider configurations with for_each, so each
# supported region has a static alias here and a static module block in main.tf; the variable
# `regions` chooses which of them exist. To support another region, add an alias here, a module
# block in main.tf and the region to local.supported_regions (see README.md).

provider "aws" {
  alias  = "bucket"
  region = var.bucket_region

  default_tags {
    tags = local.tags
  }
}

provider "aws" {
  alias  = "eu_west_1"
  region = "eu-west-1"

  default_tags {
    tags = local.tags
  }
}

provider "aws" {
  alias  = "us_east_2"
  region = "us-east-2"

  default_tags {
    tags = local.tags
  }
}

provider "aws" {
  alias  = "ap_northeast_1"
  region = "ap-northeast-1"

  default_tags {
    tags = local.tags
  }
}
