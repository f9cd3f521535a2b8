# What an operator needs after apply: where the hosts are and how to look at them through SSM.

output "bucket_name" {
  description = "The S3 bucket; host H writes under s3://<bucket>/<s3_prefix>/H/."
  value       = aws_s3_bucket.data.bucket
}

output "instance_ids" {
  description = "EC2 instance id per host_id."
  value       = { for h in local.hosts : h.host_id => h.instance_id }
}

output "hosts" {
  description = "Per host_id: region, instance id, S3 prefix and ready-to-paste SSM commands (session, supervisorctl status, ops status, deploy)."
  value       = { for h in local.hosts : h.host_id => h }
}
