locals {
  deploy_dir = "/opt/collector"
  ssm_run    = "aws ssm send-command --region ${var.region} --instance-ids ${aws_instance.host.id} --document-name AWS-RunShellScript --query Command.CommandId --output text --parameters"
}

output "host_id" {
  value = var.host_id
}

output "region" {
  value = var.region
}

output "instance_id" {
  value = aws_instance.host.id
}

output "role_arn" {
  value = aws_iam_role.host.arn
}

output "s3_prefix" {
  description = "Where this host's files go."
  value       = "s3://${var.settings.bucket_name}/${var.settings.s3_prefix}/${var.host_id}/"
}

output "ssm_session" {
  description = "Interactive shell on the host (Session Manager plugin required)."
  value       = "aws ssm start-session --region ${var.region} --target ${aws_instance.host.id}"
}

output "ssm_supervisorctl_status" {
  description = "supervisorctl status through Run Command; read the output with `aws ssm get-command-invocation --region <region> --instance-id <id> --command-id <printed id>`."
  value       = "${local.ssm_run} 'commands=[\"${local.deploy_dir}/.venv/bin/supervisorctl -c ${local.deploy_dir}/supervisord.conf status\"]'"
}

output "ssm_ops_status" {
  description = "The fleet status table (python -m ops status) through Run Command."
  value       = "${local.ssm_run} 'commands=[\"cd ${local.deploy_dir} && .venv/bin/python -m ops status\"]'"
}

output "ssm_deploy" {
  description = "Roll out another git ref (replace REF) through Run Command."
  value       = "${local.ssm_run} 'commands=[\"GIT_REF=REF /usr/local/sbin/collector-deploy\"]'"
}
