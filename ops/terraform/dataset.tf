# The dataset (README "Dataset"): Glue tables with partition projection over
# s3://<bucket>/<dataset_prefix>/, an Athena workgroup, and the dataset builder's role.
# The hosts' roles are not touched: they still reach only their own prefix.

module "dataset" {
  source    = "./modules/dataset"
  providers = { aws = aws.bucket }

  name                  = var.name
  bucket_name           = aws_s3_bucket.data.bucket
  s3_prefix             = var.s3_prefix
  dataset_prefix        = var.dataset_prefix
  athena_results_prefix = var.athena_results_prefix
  exchanges             = ["binance", "coinbase", "bitstamp", "bitfinex"]
  first_date            = var.dataset_first_date
}

output "dataset" {
  description = "The dataset's Glue database, tables, Athena workgroup and builder role."
  value = {
    glue_database    = module.dataset.glue_database
    tables           = module.dataset.tables
    athena_workgroup = module.dataset.athena_workgroup
    builder_role_arn = module.dataset.builder_role_arn
    location         = "s3://${aws_s3_bucket.data.bucket}/${var.dataset_prefix}/"
  }
}
