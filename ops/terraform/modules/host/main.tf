# One collector host: security group (no inbound by default), EC2 instance with IMDSv2, an
# encrypted root volume and the cloud-init user data that installs and starts the fleet.

data "aws_ssm_parameter" "ami" {
  count = var.ami_id == "" ? 1 : 0
  name  = var.settings.ami_ssm_parameter
}

locals {
  ami_id = var.ami_id != "" ? var.ami_id : nonsensitive(data.aws_ssm_parameter.ami[0].value)

  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    host_id            = var.host_id
    region             = var.region
    bucket_name        = var.settings.bucket_name
    bucket_region      = var.settings.bucket_region
    s3_prefix          = var.settings.s3_prefix
    retention_days     = var.settings.retention_days
    secrets_region     = var.settings.secrets_region
    ssm_parameter_path = var.settings.ssm_parameter_path
    git_url            = var.settings.git_url
    git_ref            = var.settings.git_ref
    wheel_url          = var.settings.wheel_url
    config_toml_b64    = base64encode(var.settings.config_toml)
    fleet_hosts_json   = jsonencode(var.settings.fleet_hosts)
    replicas           = var.settings.replicas
    dataset_job        = var.dataset != "" ? "1" : ""
    supervisord_b64    = base64encode(var.settings.supervisord_conf)
  })

  # Egress the collectors need: exchanges (443, Binance 9443), git/pip/AWS APIs (443),
  # distribution mirrors (80). DNS and NTP go to the VPC resolver / link-local time service,
  # which security groups do not filter.
  egress_ports = { http = 80, https = 443, binance = 9443 }
}

resource "aws_security_group" "host" {
  name        = "${var.settings.name}-${var.host_id}"
  description = "Collector host ${var.host_id}: no inbound (SSM), outbound web only"
  vpc_id      = var.vpc_id != "" ? var.vpc_id : null

  tags = { Name = "${var.settings.name}-${var.host_id}" }
}

resource "aws_vpc_security_group_egress_rule" "web" {
  for_each = local.egress_ports

  security_group_id = aws_security_group.host.id
  description       = "Outbound ${each.key} (tcp/${each.value})"
  ip_protocol       = "tcp"
  from_port         = each.value
  to_port           = each.value
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each = toset(var.settings.ssh_cidr_blocks)

  security_group_id = aws_security_group.host.id
  description       = "SSH from ${each.value} (ssh_cidr_blocks)"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.value
}

resource "aws_instance" "host" {
  ami                    = local.ami_id
  instance_type          = var.settings.instance_type
  subnet_id              = var.subnet_id != "" ? var.subnet_id : null
  vpc_security_group_ids = [aws_security_group.host.id]
  iam_instance_profile   = aws_iam_instance_profile.host.name
  key_name               = var.settings.ssh_key_name != "" ? var.settings.ssh_key_name : null
  monitoring             = true
  ebs_optimized          = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.settings.root_volume_gb
    encrypted             = true
    delete_on_termination = true
  }

  # gzip keeps the script (and wheel mode's embedded config files) far below the 16 KB limit.
  user_data_base64            = base64gzip(local.user_data)
  user_data_replace_on_change = false

  tags = { Name = "${var.settings.name}-${var.host_id}" }

  lifecycle {
    # A newer image behind the SSM parameter, or a new git_ref, must not replace a running
    # collector: roll out with collector-deploy through SSM (README.md); replaced hosts pick
    # up the current values.
    ignore_changes = [ami, user_data_base64]
  }

  depends_on = [aws_iam_role_policy.host, aws_iam_role_policy_attachment.ssm_core]
}
