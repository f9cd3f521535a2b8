# The fleet: one S3 bucket (lifecycle to Glacier) and hosts_per_region collector hosts per
# region, each with its own instance role limited to its own key prefix
# s3://<bucket>/<s3_prefix>/<host_id>/ (plus the fleet's shared universe document and the
# other hosts' status snapshots). Every host's config.toml lists the whole fleet.

locals {
  tags = merge({ Project = var.name, ManagedBy = "terraform" }, var.tags)

  # The whole fleet, known before any instance exists: [fleet] hosts of every config.toml.
  host_ids = {
    for r in var.regions : r => [
      for i in range(var.hosts_per_region) : var.hosts_per_region == 1 ? r : "${r}-${i + 1}"
    ]
  }
  fleet_hosts  = flatten([for r in var.regions : [for id in local.host_ids[r] : { id = id, region = r }]])
  dataset_host = var.dataset_host != "" ? var.dataset_host : local.fleet_hosts[0].id

  secrets_region = var.secrets_region != "" ? var.secrets_region : var.bucket_region

  # Sized for the retention window: the files kept locally after delivery plus a backlog of
  # two days in case S3 sync stalls, on top of the system.
  root_volume_gb = var.root_volume_gb > 0 ? var.root_volume_gb : ceil(16 + var.daily_data_gb * (var.retention_days + 2))

  # In wheel mode the hosts get this checkout's config.toml and supervisord.conf (a wheel
  # carries neither); in git mode they use the files of the ref they check out.
  repo_root = "${path.module}/../.."

  host = {
    name               = var.name
    instance_type      = var.instance_type
    ami_ssm_parameter  = var.ami_ssm_parameter
    ssh_cidr_blocks    = var.ssh_cidr_blocks
    ssh_key_name       = var.ssh_key_name
    bucket_name        = aws_s3_bucket.data.bucket
    bucket_region      = var.bucket_region
    s3_prefix          = var.s3_prefix
    secrets_region     = local.secrets_region
    ssm_parameter_path = var.ssm_parameter_path
    ssm_kms_key_arn    = var.ssm_kms_key_arn
    git_url            = var.git_url
    git_ref            = var.git_ref
    wheel_url          = var.wheel_url
    config_toml        = var.wheel_url != "" ? file("${local.repo_root}/config.toml") : ""
    supervisord_conf   = var.wheel_url != "" ? file("${local.repo_root}/supervisord.conf") : ""
    root_volume_gb     = local.root_volume_gb
    retention_days     = var.retention_days
    fleet_hosts        = local.fleet_hosts
    replicas           = var.replicas
  }
}

# --- hosts: one static module block per supported region (see providers.tf) -----------------

module "host_eu_west_1" {
  source    = "./modules/host"
  count     = contains(var.regions, "eu-west-1") ? var.hosts_per_region : 0
  providers = { aws = aws.eu_west_1 }

  region    = "eu-west-1"
  host_id   = local.host_ids["eu-west-1"][count.index]
  ami_id    = lookup(var.ami_ids, "eu-west-1", "")
  vpc_id    = try(var.network["eu-west-1"].vpc_id, "")
  subnet_id = try(var.network["eu-west-1"].subnet_id, "")
  settings  = local.host
  dataset   = local.host_ids["eu-west-1"][count.index] == local.dataset_host ? module.dataset.builder_policy_json : ""
}

module "host_us_east_2" {
  source    = "./modules/host"
  count     = contains(var.regions, "us-east-2") ? var.hosts_per_region : 0
  providers = { aws = aws.us_east_2 }

  region    = "us-east-2"
  host_id   = local.host_ids["us-east-2"][count.index]
  ami_id    = lookup(var.ami_ids, "us-east-2", "")
  vpc_id    = try(var.network["us-east-2"].vpc_id, "")
  subnet_id = try(var.network["us-east-2"].subnet_id, "")
  settings  = local.host
  dataset   = local.host_ids["us-east-2"][count.index] == local.dataset_host ? module.dataset.builder_policy_json : ""
}

module "host_ap_northeast_1" {
  source    = "./modules/host"
  count     = contains(var.regions, "ap-northeast-1") ? var.hosts_per_region : 0
  providers = { aws = aws.ap_northeast_1 }

  region    = "ap-northeast-1"
  host_id   = local.host_ids["ap-northeast-1"][count.index]
  ami_id    = lookup(var.ami_ids, "ap-northeast-1", "")
  vpc_id    = try(var.network["ap-northeast-1"].vpc_id, "")
  subnet_id = try(var.network["ap-northeast-1"].subnet_id, "")
  settings  = local.host
  dataset   = local.host_ids["ap-northeast-1"][count.index] == local.dataset_host ? module.dataset.builder_policy_json : ""
}

locals {
  hosts = concat(module.host_eu_west_1, module.host_us_east_2, module.host_ap_northeast_1)
}

# Plan-time checks that need the fleet list (a variable's validation cannot see locals).
resource "terraform_data" "fleet_checks" {
  input = local.dataset_host

  lifecycle {
    precondition {
      condition     = contains([for h in local.fleet_hosts : h.id], local.dataset_host)
      error_message = "dataset_host must be the host_id of one of the fleet's hosts."
    }
  }
}
