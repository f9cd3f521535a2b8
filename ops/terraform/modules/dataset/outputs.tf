output "glue_database" {
  description = "The Glue database of the dataset's tables."
  value       = aws_glue_catalog_database.dataset.name
}

output "tables" {
  description = "The Glue tables: one per data type, and completeness."
  value       = concat(sort([for t in aws_glue_catalog_table.data : t.name]), [aws_glue_catalog_table.completeness.name])
}

output "athena_workgroup" {
  description = "The Athena workgroup (its results go under the results prefix)."
  value       = aws_athena_workgroup.dataset.name
}

output "builder_role_arn" {
  description = "The dataset builder's role (and instance profile of the same name)."
  value       = aws_iam_role.builder.arn
}

output "builder_policy_json" {
  description = "The builder's permissions, for the one fleet host that runs the dataset job."
  value       = data.aws_iam_policy_document.builder.json
}
