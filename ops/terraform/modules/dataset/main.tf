# The dataset built by `python -m ops.dataset` (README "Dataset"): a Glue database with one
# table per data type and the completeness table, all with partition projection (no crawler,
# no MSCK REPAIR: Athena computes the partitions from the key layout), an Athena workgroup
# with its results location, and the role of the dataset builder.

locals {
  bucket_arn = "arn:aws:s3:::${var.bucket_name}"
  database   = replace(lower(var.name), "-", "_")
  root       = "s3://${var.bucket_name}/${var.dataset_prefix}"

  # Columns of each table: the parsed schema minus `symbol` (a partition key here; the
  # Parquet files carry it too, with the same value), plus `source`. Prices and sizes are the
  # exchange's exact decimal strings.
  columns = {
    trade = [
      ["event_time", "bigint"], ["trade_id", "bigint"], ["price", "string"],
      ["quantity", "string"], ["trade_time", "bigint"], ["is_buyer_maker", "boolean"],
      ["local_time", "bigint"], ["source", "string"],
    ]
    book = [
      ["timestamp", "bigint"], ["side", "string"], ["price", "string"], ["quantity", "string"],
      ["level", "bigint"], ["local_time", "bigint"], ["source", "string"],
    ]
    l3 = [
      ["timestamp", "bigint"], ["sequence", "bigint"], ["action", "string"],
      ["order_id", "string"], ["side", "string"], ["price", "string"], ["size", "string"],
      ["trade_id", "bigint"], ["maker_order_id", "string"], ["taker_order_id", "string"],
      ["reason", "string"], ["local_time", "bigint"], ["source", "string"],
    ]
  }
  completeness_columns = [
    ["exchange", "string"], ["symbol", "string"], ["data_type", "string"], ["hour", "string"],
    ["hosts", "array<string>"], ["rows", "bigint"], ["first_id", "bigint"],
    ["last_id", "bigint"], ["missing_before", "bigint"], ["filled_from_hosts", "bigint"],
    ["filled_from_rest", "bigint"], ["missing_after", "bigint"], ["from_failed_qa", "bigint"],
    ["out_of_sync_s", "double"], ["best_host", "string"], ["best_host_out_of_sync_s", "double"],
    ["from_unchecked", "bigint"], ["disagreements", "bigint"], ["not_fillable", "bigint"],
    ["bad_rows", "bigint"], ["unreadable_files", "bigint"], ["input_files", "bigint"],
    ["note", "string"],
  ]

  date_projection = {
    "projection.date.type"          = "date"
    "projection.date.format"        = "yyyy-MM-dd"
    "projection.date.range"         = "${var.first_date},NOW"
    "projection.date.interval"      = "1"
    "projection.date.interval.unit" = "DAYS"
  }
}

resource "aws_glue_catalog_database" "dataset" {
  name        = local.database
  description = "The merged market-data dataset (ops.dataset) in ${local.root}/."
}

resource "aws_glue_catalog_table" "data" {
  for_each      = local.columns
  name          = each.key
  database_name = aws_glue_catalog_database.dataset.name
  table_type    = "EXTERNAL_TABLE"
  description   = "One ${each.key} row per merged record; query with WHERE exchange, symbol and date."

  parameters = merge(local.date_projection, {
    "classification"             = "parquet"
    "parquet.compression"        = "ZSTD"
    "projection.enabled"         = "true"
    "projection.exchange.type"   = "enum"
    "projection.exchange.values" = join(",", var.exchanges)
    # any symbol: a query names the one(s) it wants
    "projection.symbol.type"    = "injected"
    "storage.location.template" = "${local.root}/${each.key}/exchange=$${exchange}/symbol=$${symbol}/date=$${date}/"
  })

  partition_keys {
    name = "exchange"
    type = "string"
  }
  partition_keys {
    name = "symbol"
    type = "string"
  }
  partition_keys {
    name = "date"
    type = "string"
  }

  storage_descriptor {
    location      = "${local.root}/${each.key}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }

    dynamic "columns" {
      for_each = each.value
      content {
        name = columns.value[0]
        type = columns.value[1]
      }
    }
  }
}

resource "aws_glue_catalog_table" "completeness" {
  name          = "completeness"
  database_name = aws_glue_catalog_database.dataset.name
  table_type    = "EXTERNAL_TABLE"
  description   = "One row per (exchange, symbol, data_type, hour): how complete the merged hour is."

  parameters = merge(local.date_projection, {
    "classification"            = "parquet"
    "projection.enabled"        = "true"
    "storage.location.template" = "${local.root}/completeness/date=$${date}/"
  })

  partition_keys {
    name = "date"
    type = "string"
  }

  storage_descriptor {
    location      = "${local.root}/completeness/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }

    dynamic "columns" {
      for_each = local.completeness_columns
      content {
        name = columns.value[0]
        type = columns.value[1]
      }
    }
  }
}

resource "aws_athena_workgroup" "dataset" {
  name        = var.name
  description = "Queries over the ${local.database} dataset; results under s3://${var.bucket_name}/${var.athena_results_prefix}/."
  state       = "ENABLED"

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true

    result_configuration {
      output_location = "s3://${var.bucket_name}/${var.athena_results_prefix}/"

      encryption_configuration {
        encryption_option = "SSE_S3"
      }
    }
  }
}

# --- the dataset builder's role: read every host's prefix, write only the dataset's ----------

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "builder" {
  name               = "${var.name}-dataset"
  description        = "Dataset builder: reads s3://${var.bucket_name}/${var.s3_prefix}/, writes only ${var.dataset_prefix}/."
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "builder" {
  statement {
    sid       = "ReadHostCopies"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/${var.s3_prefix}/*"]
  }

  statement {
    sid       = "ListHostsAndDataset"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = [
        "${var.s3_prefix}/", "${var.s3_prefix}/*", "${var.dataset_prefix}/", "${var.dataset_prefix}/*",
      ]
    }
  }

  statement {
    sid       = "WriteDataset"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${local.bucket_arn}/${var.dataset_prefix}/*"]
  }
}

resource "aws_iam_role_policy" "builder" {
  name   = "dataset-builder"
  role   = aws_iam_role.builder.id
  policy = data.aws_iam_policy_document.builder.json
}

resource "aws_iam_instance_profile" "builder" {
  name = aws_iam_role.builder.name
  role = aws_iam_role.builder.name
}
