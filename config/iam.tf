# IAM for oke-credential-provider: the worker nodes prove who they are with instance principals,
# so OCI needs (1) a dynamic group that contains the worker instances and (2) a policy that lets
# that group read (pull from) the repositories.
#
# Usage: terraform init && terraform apply -var tenancy_ocid=... -var compartment_ocid=...
# The OCI provider is configured as usual (~/.oci/config, or the provider block of your stack).
# IAM resources live in the home region: point the provider at it.

terraform {
  required_providers {
    oci = {
      source = "oracle/oci"
    }
  }
}

variable "tenancy_ocid" {
  description = "OCID of the tenancy (dynamic groups are created at its root)."
  type        = string
}

variable "compartment_ocid" {
  description = "OCID of the compartment that holds the worker node instances."
  type        = string
}

variable "repos_compartment_ocid" {
  description = "OCID of the compartment that holds the OCIR repositories; null means compartment_ocid. Ignored when policy_scope is \"tenancy\"."
  type        = string
  default     = null
}

variable "policy_scope" {
  description = "\"compartment\": read repos in repos_compartment_ocid only; \"tenancy\": read repos in every compartment."
  type        = string
  default     = "compartment"

  validation {
    condition     = contains(["compartment", "tenancy"], var.policy_scope)
    error_message = "policy_scope must be \"compartment\" or \"tenancy\"."
  }
}

variable "dynamic_group_name" {
  description = "Name of the dynamic group of worker nodes."
  type        = string
  default     = "oke-credential-provider-nodes"
}

variable "create_dynamic_group" {
  description = "false to use an existing dynamic group named dynamic_group_name (e.g. one in a non-default identity domain)."
  type        = bool
  default     = true
}

variable "identity_domain_name" {
  description = "Identity domain of the dynamic group, written into the policy as '<domain>'/'<group>'. null for tenancies without identity domains; oci_identity_dynamic_group creates groups in the Default domain."
  type        = string
  default     = null
}

locals {
  repos_compartment = coalesce(var.repos_compartment_ocid, var.compartment_ocid)
  group_reference = (
    var.identity_domain_name == null
    ? var.dynamic_group_name
    : "'${var.identity_domain_name}'/'${var.dynamic_group_name}'"
  )
  where = (
    var.policy_scope == "tenancy"
    ? "tenancy"
    : "compartment id ${local.repos_compartment}"
  )
}

resource "oci_identity_dynamic_group" "nodes" {
  count          = var.create_dynamic_group ? 1 : 0
  compartment_id = var.tenancy_ocid
  name           = var.dynamic_group_name
  description    = "OKE worker nodes that pull from OCIR with oke-credential-provider"
  matching_rule  = "All {instance.compartment.id = '${var.compartment_ocid}'}"
}

resource "oci_identity_policy" "pull" {
  # A tenancy-wide statement must be attached at the root; a compartment one sits beside the repos.
  compartment_id = var.policy_scope == "tenancy" ? var.tenancy_ocid : local.repos_compartment
  name           = "${var.dynamic_group_name}-read-repos"
  description    = "Lets OKE worker nodes pull images from OCIR (oke-credential-provider)"
  statements = [
    "Allow dynamic-group ${local.group_reference} to read repos in ${local.where}",
  ]
  depends_on = [oci_identity_dynamic_group.nodes]
}

output "policy_statements" {
  value = oci_identity_policy.pull.statements
}
