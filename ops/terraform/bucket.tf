# The bucket every host delivers to. Each host writes only under <s3_prefix>/<host_id>/
# (enforced by its instance role, modules/host/iam.tf).

resource "aws_s3_bucket" "data" {
  provider = aws.bucket
  bucket   = var.bucket_name

  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) default encryption is enabled below; a customer-managed KMS key would need key grants for three regional roles and adds per-request KMS cost with no reader needing key-level audit.
  #checkov:skip=CKV_AWS_18:Server access logs would need a second bucket per deployment; object-level audit is available through CloudTrail S3 data events when an operator needs it.
  #checkov:skip=CKV_AWS_144:Cross-region replication would double storage; redundancy comes from three hosts in three regions collecting the same streams, and the archive tier is itself multi-AZ.
  #checkov:skip=CKV2_AWS_62:Nothing consumes S3 event notifications; consumers read the bucket on their own schedule.
}

resource "aws_s3_bucket_ownership_controls" "data" {
  provider = aws.bucket
  bucket   = aws_s3_bucket.data.id

  rule {
    object_ownership = "BucketOwnerEnforced" # ACLs disabled
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  provider = aws.bucket
  bucket   = aws_s3_bucket.data.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "data" {
  provider = aws.bucket
  bucket   = aws_s3_bucket.data.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  provider = aws.bucket
  bucket   = aws_s3_bucket.data.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

data "aws_iam_policy_document" "bucket" {
  provider = aws.bucket

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    # From the variable, not the resource: a data source that refers to a resource being
    # created is only read at apply, and the plan could not show the policy.
    resources = ["arn:aws:s3:::${var.bucket_name}", "arn:aws:s3:::${var.bucket_name}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  provider = aws.bucket
  bucket   = aws_s3_bucket.data.id
  policy   = data.aws_iam_policy_document.bucket.json

  # The public access block must exist first, or a policy change can race it.
  depends_on = [aws_s3_bucket_public_access_block.data]
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  provider = aws.bucket
  bucket   = aws_s3_bucket.data.id

  rule {
    id     = "archive"
    status = "Enabled"

    filter {}

    transition {
      days          = var.glacier_transition_days
      storage_class = var.glacier_storage_class
    }

    # Versioning keeps a replaced object as a noncurrent version: archive it the same way.
    noncurrent_version_transition {
      noncurrent_days = var.glacier_transition_days
      storage_class   = var.glacier_storage_class
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # Lifecycle rules on a versioned bucket must be applied after versioning is enabled.
  depends_on = [aws_s3_bucket_versioning.data]
}
