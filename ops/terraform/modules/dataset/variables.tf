variable "name" {
  description = "Name prefix of the resources (the project name)."
  type        = string
}

variable "bucket_name" {
  description = "The fleet's bucket: the hosts' copies and the dataset both live in it."
  type        = string
}

variable "s3_prefix" {
  description = "The hosts' key prefix ([sync] prefix): s3://bucket/<s3_prefix>/<host_id>/..."
  type        = string
}

variable "dataset_prefix" {
  description = "The dataset's key prefix ([dataset] prefix)."
  type        = string
}

variable "athena_results_prefix" {
  description = "Key prefix of the Athena workgroup's query results."
  type        = string
}

variable "exchanges" {
  description = "Exchange ids (the values of the exchange= partitions)."
  type        = list(string)
}

variable "first_date" {
  description = "The first date of the date= partitions (yyyy-MM-dd)."
  type        = string
}
