# Per-workload pull identity (README "Per-workload identity"): IAM for the service accounts that
# opt in. Part of the same module as iam.tf (it uses its variables); nothing is created while
# `workloads` is empty. Policy principal names for federated tokens are UNVERIFIED (no public
# source settles them); a real tenancy must confirm them.

variable "workload_backend" {
  description = "oke (OKE Workload Identity, enhanced clusters) or federation (identity domain token exchange)"
  type        = string
  default     = "oke"
  validation {
    condition     = contains(["oke", "federation"], var.workload_backend)
    error_message = "workload_backend must be oke or federation."
  }
}

variable "cluster_ocid" {
  description = "oke: the cluster whose workloads may pull"
  type        = string
  default     = null
}

variable "workloads" {
  description = "Service accounts that pull with their own identity, and the repository compartment each may read"
  type = list(object({
    namespace       = string
    service_account = string
  }))
  default = []
}

locals {
  workload_statements = [
    for w in var.workloads : (
      var.workload_backend == "oke"
      ? "Allow any-user to read repos in ${local.where} where all {request.principal.type = 'workload', request.principal.namespace = '${w.namespace}', request.principal.service_account = '${w.service_account}', request.principal.cluster_id = '${var.cluster_ocid}'}"
      # UNVERIFIED principal attribute names for a federated (UPST/RPST) service account.
      : "Allow any-user to read repos in ${local.where} where all {request.principal.type = 'workload', request.principal.namespace = '${w.namespace}', request.principal.service_account = '${w.service_account}'}"
    )
  ]
  # federation: the nodes' dynamic group may exchange tokens at the identity domain (UNVERIFIED
  # statement form; the Identity Propagation Trust itself is created in the identity domain).
  exchange_statements = var.workload_backend == "federation" ? [
    "Allow dynamic-group ${local.group_reference} to use identity-domain-token-exchange in tenancy",
  ] : []
}

resource "oci_identity_policy" "workloads" {
  count          = length(var.workloads) > 0 ? 1 : 0
  compartment_id = var.policy_scope == "tenancy" ? var.tenancy_ocid : local.repos_compartment
  name           = "${var.dynamic_group_name}-workload-read-repos"
  description    = "Lets opted-in Kubernetes service accounts pull from OCIR (oke-credential-provider)"
  statements     = concat(local.workload_statements, local.exchange_statements)
}

output "workload_policy_statements" {
  value = concat(local.workload_statements, local.exchange_statements)
}
