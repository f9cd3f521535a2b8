# The host's instance role: S3 only under its own prefix, its secrets path in Parameter
# Store, and the AWS-managed SSM core policy for Session Manager / Run Command.

locals {
  bucket_arn  = "arn:aws:s3:::${var.settings.bucket_name}"
  host_prefix = "${var.settings.s3_prefix}/${var.host_id}"

  # The account id is not looked up (that needs an API call at plan time); parameter ARNs
  # of another account are not reachable by this role anyway.
  ssm_path_arn = "arn:aws:ssm:${var.settings.secrets_region}:*:parameter${var.settings.ssm_parameter_path}"
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "host" {
  name               = "${var.settings.name}-${var.host_id}"
  description        = "Collector host ${var.host_id}: S3 under ${local.host_prefix}/ only, secrets, SSM."
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "host" {
  statement {
    sid       = "OwnPrefixObjects"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${local.bucket_arn}/${local.host_prefix}/*"]
  }

  statement {
    sid       = "ListOwnPrefix"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.host_prefix}/", "${local.host_prefix}/*"]
    }
  }

  statement {
    sid       = "FleetUniverse"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${local.bucket_arn}/${var.settings.s3_prefix}/universe.json"]
  }

  statement {
    sid       = "ReadFleetStatus"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/${var.settings.s3_prefix}/*/_status/*"]
  }

  statement {
    sid       = "ReadLifecycle"
    actions   = ["s3:GetLifecycleConfiguration"]
    resources = [local.bucket_arn]
  }

  statement {
    sid       = "ReadSecrets"
    actions   = ["ssm:GetParametersByPath", "ssm:GetParameters", "ssm:GetParameter"]
    resources = [local.ssm_path_arn, "${local.ssm_path_arn}/*"]
  }

  dynamic "statement" {
    for_each = var.settings.ssm_kms_key_arn != "" ? [var.settings.ssm_kms_key_arn] : []
    content {
      sid       = "DecryptSecrets"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "host" {
  name   = "collector-host"
  role   = aws_iam_role.host.id
  policy = data.aws_iam_policy_document.host.json
}

# The one host that builds the dataset also gets the builder's permissions (read every host's
# copies, write only the dataset prefix); every other host's role is as above.
resource "aws_iam_role_policy" "dataset" {
  count  = var.dataset != "" ? 1 : 0
  name   = "dataset-builder"
  role   = aws_iam_role.host.id
  policy = var.dataset
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.host.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "host" {
  name = aws_iam_role.host.name
  role = aws_iam_role.host.name
}
