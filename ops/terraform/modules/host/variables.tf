# Inputs of one collector host. `settings` carries the values shared by every host.

variable "region" {
  description = "Region of this host (must match the provider passed in)."
  type        = string
}

variable "host_id" {
  description = "host_id of this host: its name in config.toml, S3 keys and alerts."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", var.host_id))
    error_message = "host_id must be 1-63 of [A-Za-z0-9._-] (as collector/settings.py requires)."
  }
}

variable "ami_id" {
  description = "AMI of the host; empty = the image named by settings.ami_ssm_parameter."
  type        = string
  default     = ""
}

variable "vpc_id" {
  description = "VPC of the security group; empty = the region's default VPC."
  type        = string
  default     = ""
}

variable "subnet_id" {
  description = "Subnet of the instance; empty = a default subnet of the default VPC."
  type        = string
  default     = ""
}

variable "settings" {
  description = "Values shared by every host (see local.host in the root main.tf)."
  type = object({
    name               = string
    instance_type      = string
    ami_ssm_parameter  = string
    ssh_cidr_blocks    = list(string)
    ssh_key_name       = string
    bucket_name        = string
    bucket_region      = string
    s3_prefix          = string
    secrets_region     = string
    ssm_parameter_path = string
    ssm_kms_key_arn    = string
    git_url            = string
    git_ref            = string
    wheel_url          = string
    config_toml        = string
    supervisord_conf   = string
    root_volume_gb     = number
    retention_days     = number
    fleet_hosts        = list(object({ id = string, region = string }))
    replicas           = number
  })
}

variable "dataset" {
  description = "The dataset builder's policy JSON when this host builds the dataset, else empty."
  type        = string
  default     = ""
}
