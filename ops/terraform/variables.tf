# Inputs of the root module. Only bucket_name and git_url (or wheel_url) have no default;
# terraform.tfvars.example shows a complete set.

variable "name" {
  description = "Name prefix of every resource (instances, roles, security groups)."
  type        = string
  default     = "l3collector"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "regions" {
  description = "Regions that get a collector host; each host's host_id is its region name."
  type        = list(string)
  default     = ["eu-west-1", "us-east-2", "ap-northeast-1"]

  validation {
    condition = length(var.regions) > 0 && alltrue([
      for r in var.regions : contains(["eu-west-1", "us-east-2", "ap-northeast-1"], r)
    ])
    error_message = "regions must be a non-empty subset of eu-west-1, us-east-2, ap-northeast-1 (the regions with a provider alias in providers.tf; README.md says how to add one)."
  }
}

variable "hosts_per_region" {
  description = "Collector hosts per region. Host ids are the region name (1 host) or <region>-1, <region>-2, ...; every host's config.toml lists the whole fleet ([fleet] hosts) and each collects only its share (ops/placement.py)."
  type        = number
  default     = 1

  validation {
    condition     = var.hosts_per_region >= 1 && var.hosts_per_region <= 8 && floor(var.hosts_per_region) == var.hosts_per_region
    error_message = "hosts_per_region must be a whole number from 1 to 8."
  }
}

variable "replicas" {
  description = "[fleet] replicas: each stream is collected in this many regions (at most once per region)."
  type        = number
  default     = 2

  validation {
    condition     = var.replicas >= 1 && var.replicas <= 16 && floor(var.replicas) == var.replicas
    error_message = "replicas must be a whole number from 1 to 16."
  }
}

variable "dataset_host" {
  description = "host_id of the one host that builds the dataset (its role also gets the dataset builder's policy and its [fleet] periodic the dataset job); empty = the first host of the first region."
  type        = string
  default     = ""
}

# --- the bucket ----------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the S3 bucket that receives every host's files (globally unique)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')."
  }
}

variable "bucket_region" {
  description = "Region of the S3 bucket."
  type        = string
  default     = "eu-west-1"
}

variable "s3_prefix" {
  description = "Key prefix inside the bucket ([sync] prefix): files go to s3://bucket/<prefix>/<host_id>/..."
  type        = string
  default     = "collector"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*$", var.s3_prefix))
    error_message = "s3_prefix must be one path segment of [A-Za-z0-9._-] (no '/')."
  }
}

variable "glacier_storage_class" {
  description = "Archive storage class: GLACIER (Glacier Flexible Retrieval) or DEEP_ARCHIVE."
  type        = string
  default     = "GLACIER"

  validation {
    condition     = contains(["GLACIER", "DEEP_ARCHIVE"], var.glacier_storage_class)
    error_message = "glacier_storage_class must be GLACIER or DEEP_ARCHIVE."
  }
}

variable "glacier_transition_days" {
  description = "Days after upload when objects move to the archive storage class."
  type        = number
  default     = 30

  validation {
    condition     = var.glacier_transition_days >= 0 && floor(var.glacier_transition_days) == var.glacier_transition_days
    error_message = "glacier_transition_days must be a whole number >= 0."
  }
}

# --- the hosts -----------------------------------------------------------------------------

variable "instance_type" {
  description = "EC2 instance type of every host (x86_64; the default AMI is x86_64)."
  type        = string
  default     = "t3.small"
}

variable "ami_ids" {
  description = "AMI per region (region => ami-...). A region without an entry uses the latest image named by ami_ssm_parameter, resolved at plan time."
  type        = map(string)
  default     = {}
}

variable "ami_ssm_parameter" {
  description = "Public SSM parameter naming the default AMI. Amazon Linux 2023 ships the SSM agent and the AWS CLI; the user data also supports Debian 12 (/aws/service/debian/release/12/latest/amd64)."
  type        = string
  default     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

variable "network" {
  description = "Optional VPC and subnet per region (region => {vpc_id, subnet_id}); a region without an entry uses its default VPC. The subnet needs outbound internet (public IP or NAT)."
  type = map(object({
    vpc_id    = string
    subnet_id = string
  }))
  default = {}
}

variable "ssh_cidr_blocks" {
  description = "CIDRs allowed to reach port 22. Empty (default): no inbound rule at all; use SSM Session Manager."
  type        = list(string)
  default     = []
}

variable "ssh_key_name" {
  description = "EC2 key pair name for SSH (only useful with ssh_cidr_blocks); empty = none."
  type        = string
  default     = ""
}

variable "retention_days" {
  description = "[sync] retention_days written to each host's config.toml: days a verified, delivered file is kept locally."
  type        = number
  default     = 3
}

variable "daily_data_gb" {
  description = "Estimated GB collected per host per day; sizes the root volume with retention_days."
  type        = number
  default     = 15
}

variable "root_volume_gb" {
  description = "Root volume size in GB; 0 (default) = 16 GB for the system + daily_data_gb x (retention_days + 2 days of sync backlog)."
  type        = number
  default     = 0
}

# --- what the hosts run --------------------------------------------------------------------

variable "git_url" {
  description = "Git URL the hosts clone the project from (https; public, or reachable by the host). Ignored when wheel_url is set."
  type        = string
  default     = ""

  validation {
    condition     = !can(regex("['\\s]", var.git_url))
    error_message = "git_url must not contain quotes or whitespace."
  }

  validation {
    condition     = var.git_url != "" || var.wheel_url != ""
    error_message = "Set git_url (clone and install a git ref) or wheel_url (install a wheel)."
  }
}

variable "git_ref" {
  description = "Branch, tag or commit the hosts check out at first boot (rollouts: README.md)."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._/-]*$", var.git_ref))
    error_message = "git_ref must be a branch, tag or commit name of [A-Za-z0-9._/-]."
  }
}

variable "wheel_url" {
  description = "Optional URL of a wheel of the project; when set the hosts pip-install it instead of cloning git_url, with this checkout's config.toml and supervisord.conf."
  type        = string
  default     = ""

  validation {
    condition     = !can(regex("['\\s]", var.wheel_url))
    error_message = "wheel_url must not contain quotes or whitespace."
  }
}

variable "ssm_parameter_path" {
  description = "SSM Parameter Store path holding the secrets; each parameter <path>/<NAME> becomes the environment variable NAME of supervisord (e.g. /l3collector/COINBASE_API_KEY)."
  type        = string
  default     = "/l3collector"

  validation {
    condition     = can(regex("^(/[A-Za-z0-9._-]+)+$", var.ssm_parameter_path))
    error_message = "ssm_parameter_path must look like /a/b (no trailing slash)."
  }
}

variable "secrets_region" {
  description = "Region of the SSM parameters; empty = bucket_region (one set of parameters for every host)."
  type        = string
  default     = ""
}

variable "ssm_kms_key_arn" {
  description = "Customer-managed KMS key encrypting the SecureString parameters; empty = the AWS-managed aws/ssm key (no IAM grant needed)."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

variable "dataset_prefix" {
  description = "Key prefix of the dataset ([dataset] prefix): s3://bucket/<dataset_prefix>/<data_type>/exchange=../symbol=../date=../HH.parquet"
  type        = string
  default     = "dataset"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*$", var.dataset_prefix)) && var.dataset_prefix != var.s3_prefix
    error_message = "dataset_prefix must be one path segment of [A-Za-z0-9._-], other than s3_prefix."
  }
}

variable "athena_results_prefix" {
  description = "Key prefix of the Athena workgroup's query results in the bucket."
  type        = string
  default     = "athena-results"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*$", var.athena_results_prefix))
    error_message = "athena_results_prefix must be one path segment of [A-Za-z0-9._-]."
  }
}

variable "dataset_first_date" {
  description = "The first date Athena projects date= partitions from (yyyy-MM-dd)."
  type        = string
  default     = "2024-01-01"

  validation {
    condition     = can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", var.dataset_first_date))
    error_message = "dataset_first_date must be yyyy-MM-dd."
  }
}
